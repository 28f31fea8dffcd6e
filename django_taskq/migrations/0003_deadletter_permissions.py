# Written by hand: the permission that gates requeueing dead letters (admin action and page).

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("django_taskq", "0002_control_store"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="deadlettermessage",
            options={
                "permissions": [("requeue_deadlettermessage", "Can requeue dead letters")],
                "verbose_name": "dead letter",
            },
        ),
    ]
