"""Migrations, admin pages, the taskworker command's errors and banner."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from django_taskq.models import DeadLetterMessage, QueuedMessage, TaskResult
from django_taskq.service_url import mask


@pytest.mark.django_db
def test_migrations_are_complete():
    out = io.StringIO()
    call_command("makemigrations", "django_taskq", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize("model", [QueuedMessage, DeadLetterMessage, TaskResult])
def test_admin_pages_render_read_only(admin_client, model):
    meta = model._meta
    if model is TaskResult:
        obj = TaskResult.objects.create(task_id="t1", task_name="x.y", state="SUCCESS",
                                        result='{"ok": true}')
    else:
        fields = {"queue": "default", "message_id": "m1", "task_name": "x.y",
                  "body": b'[[1], {}, {}]'}
        obj = model.objects.create(**fields, **({"reason": "bad"} if model is DeadLetterMessage
                                                else {}))
    base = f"/admin/django_taskq/{meta.model_name}/"
    listing = admin_client.get(base)
    assert listing.status_code == 200 and b"x.y" in listing.content
    detail = admin_client.get(f"{base}{obj.pk}/change/")
    assert detail.status_code == 200
    assert admin_client.get(f"{base}add/").status_code == 403
    if model is not TaskResult:
        assert b"[<br>  [<br>    1<br>  ]" in detail.content  # the body is shown decoded


@pytest.mark.django_db
def test_admin_requires_staff(client):
    assert client.get("/admin/django_taskq/taskresult/").status_code == 302


def test_password_is_masked():
    assert mask("redis://user:s3cret@host:6379/0") == "redis://user:****@host:6379/0"
    assert mask("db://default") == "db://default"


@pytest.mark.parametrize("args, error", [
    (["--concurrency", "0"], "--concurrency must be at least 1"),
    (["--queues", ","], "--queues needs at least one queue name"),
    (["--prefetch-multiplier", "0"], "--prefetch-multiplier must be at least 1"),
])
def test_taskworker_rejects_bad_options(args, error):
    with pytest.raises(CommandError, match=error):
        call_command("taskworker", *args)


@pytest.mark.django_db(transaction=True)
def test_taskworker_burst_prints_banner_and_runs(settings, capsys):
    from tests.testapp.tasks import add

    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "db://default",
                      "RESULT_BACKEND": "db://default"}
    result = add.delay(20, 22)
    out = io.StringIO()
    call_command("taskworker", "--pool", "solo", "--burst", stdout=out)
    banner = out.getvalue()
    assert "broker:      db://default" in banner
    assert "tests.testapp.tasks.add" in banner
    assert "events:      task and worker events -> database 'default'" in banner
    assert "messages:    accepts json; unsigned (SIGNING_KEYS is not set)" in banner
    assert result.get(timeout=5) == 42


@pytest.mark.django_db(transaction=True)
def test_the_banner_says_a_worker_runs_signed_messages_only_without_showing_a_key(settings):
    from django_taskq.signing import key_id
    from tests.testapp.tasks import add

    key = b"k" * 40
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "db://default",
                      "RESULT_BACKEND": "db://default", "SIGNING_KEYS": [key]}
    result = add.delay(1, 1)
    out = io.StringIO()
    call_command("taskworker", "--pool", "solo", "--burst", stdout=out)
    banner = out.getvalue()
    assert f"signed only (key ids {key_id(key)}, max age 86400s)" in banner
    assert "kkkk" not in banner
    assert result.get(timeout=5) == 2


@pytest.mark.django_db(transaction=True)
def test_taskworker_without_task_events_stores_only_the_workers_own(settings):
    from django_taskq.models import TaskEvent, WorkerState
    from tests.testapp.tasks import add

    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "db://default",
                      "RESULT_BACKEND": "db://default"}
    result = add.delay(1, 2)
    out = io.StringIO()
    call_command("taskworker", "--pool", "solo", "--burst", "--without-task-events",
                 "-n", "quiet@x", stdout=out)
    assert "events:      worker events only -> database 'default'" in out.getvalue()
    assert result.get(timeout=5) == 3
    assert not TaskEvent.objects.filter(type__startswith="task-").exists()
    assert WorkerState.objects.get(hostname="quiet@x").processed == 1
    with pytest.raises(CommandError, match="not allowed with argument"):
        call_command("taskworker", "-E", "--without-task-events")
