# Extended results (RESULT_EXTENDED, Celery's result_extended): arguments and queue per result.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("django_taskq", "0003_deadletter_permissions"),
    ]

    operations = [
        migrations.AddField(
            model_name="taskresult",
            name="task_args",
            field=models.TextField(blank=True, help_text="encoded positional arguments",
                                   null=True),
        ),
        migrations.AddField(
            model_name="taskresult",
            name="task_kwargs",
            field=models.TextField(blank=True, help_text="encoded keyword arguments", null=True),
        ),
        migrations.AddField(
            model_name="taskresult",
            name="queue",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
    ]
