"""Task discovery beyond tasks.py, and the Celery-style app object (``proj/celery.py``)."""

from __future__ import annotations

import sys

import pytest

from django_taskq import Celery, current_app, registry, signals
from django_taskq.conf import get_settings
from django_taskq.discovery import discover
from django_taskq.exceptions import ConfigurationError


@pytest.fixture
def forget_modules():
    """Unload the discovery test modules so each test sees them imported (or not) afresh."""
    names = ("tests.testapp.jobs", "tests.testapp.extra_imports")
    yield
    for name in names:
        sys.modules.pop(name, None)
    for task_name in ("tests.testapp.jobs.from_jobs_module",
                      "tests.testapp.extra_imports.from_imports"):
        registry.registry.unregister(task_name)


def test_task_modules_names_the_modules_looked_for_in_each_app(settings, forget_modules):
    sys.modules.pop("tests.testapp.jobs", None)
    settings.TASKQ = {**settings.TASKQ, "TASK_MODULES": ["tasks", "jobs"]}
    discover()
    assert "tests.testapp.jobs.from_jobs_module" in registry.registry


def test_imports_and_celery_include_are_imported(settings, forget_modules):
    settings.TASKQ = {**settings.TASKQ, "IMPORTS": ["tests.testapp.extra_imports"]}
    assert discover() == ["tests.testapp.extra_imports"]
    assert registry.registry.get("tests.testapp.extra_imports.from_imports").apply((1,)).get() == 101


def test_celery_imports_setting_is_honoured(settings, forget_modules):
    settings.CELERY_IMPORTS = ["tests.testapp.extra_imports"]
    assert get_settings().IMPORTS == ("tests.testapp.extra_imports",)
    assert discover() == ["tests.testapp.extra_imports"]


def test_a_module_that_cannot_be_imported_is_a_clear_error(settings):
    settings.TASKQ = {**settings.TASKQ, "IMPORTS": ["tests.testapp.no_such_module"]}
    with pytest.raises(ConfigurationError, match=r"IMPORTS.*no_such_module.*Fix the name"):
        discover()


def test_a_bad_discovery_setting_is_left_to_the_checks(settings, forget_modules):
    settings.TASKQ = {**settings.TASKQ, "TASK_MODULES": "jobs"}  # not a list: E002
    discover()  # falls back to ("tasks",) instead of crashing every manage.py command
    assert "tests.testapp.jobs.from_jobs_module" not in registry.registry


@pytest.fixture
def app():
    from django_taskq.celery_settings import code_settings

    made = Celery("proj")
    yield made
    code_settings.clear()
    from django_taskq.conf import reset_settings

    reset_settings()


def test_the_django_celery_app_pattern_works_unchanged(app):
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.autodiscover_tasks()

    @app.task(bind=True, name="proj.hello")
    def hello(self, who):
        return f"hello {who} from {self.request.id}"

    result = hello.apply(("ada",))
    assert result.get().startswith("hello ada from ")
    assert app.tasks["proj.hello"] is hello
    assert app.AsyncResult("x").id == "x"
    assert current_app.tasks is app.tasks


def test_app_conf_settings_are_celery_settings_given_in_code(app):
    app.conf.task_routes = {"proj.*": {"queue": "proj-q"}}
    app.conf.update(task_default_priority=4)
    assert get_settings().TASK_ROUTES == ({"proj.*": {"queue": "proj-q"}},)
    assert get_settings().TASK_DEFAULT_PRIORITY == 4
    assert app.conf.task_routes == {"proj.*": {"queue": "proj-q"}}
    with pytest.raises(ConfigurationError, match="no setting 'task_routs'"):
        app.conf.task_routs = {}


def test_celery_constructor_settings_and_config_objects(app, settings, tmp_path, monkeypatch):
    # A TASKQ key wins over a Celery setting: the test settings name a broker, so drop it.
    settings.TASKQ = {k: v for k, v in settings.TASKQ.items()
                      if k not in ("BROKER_URL", "RESULT_BACKEND")}
    Celery("proj", broker="memory://from-code", backend="memory://from-code")
    assert get_settings().BROKER_URL == "memory://from-code"
    assert get_settings().RESULT_BACKEND == "memory://from-code"
    module = tmp_path / "celeryconfig_for_test.py"
    module.write_text("task_always_eager = True\nnot_a_setting = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    app.config_from_object("celeryconfig_for_test")
    assert get_settings().TASK_ALWAYS_EAGER is True


def test_on_after_configure_and_finalize_are_sent_to_each_app(app):
    from django_taskq.app import announce

    seen = []

    @app.on_after_configure.connect
    def configured(sender, **kwargs):
        seen.append(("configure", sender))

    @app.on_after_finalize.connect(sender=app)
    def finalized(sender, **kwargs):
        seen.append(("finalize", sender))

    announce()
    assert ("configure", app) in seen and ("finalize", app) in seen


def test_app_control_revokes_and_inspects(app, monkeypatch):
    revoked = []
    monkeypatch.setattr("django_taskq.app.revoke", lambda ids, terminate=False:
                        revoked.append((ids, terminate)))
    app.control.revoke("a")
    app.control.terminate("b")
    assert revoked == [("a", False), ("b", True)]
    from django_taskq.control.remote import Inspect

    assert isinstance(app.control.inspect(timeout=0.1), Inspect)
    with pytest.raises(AttributeError):
        app.control.no_such_command  # noqa: B018 - the attribute access is the test


def test_custom_task_class_of_the_app(app):
    class Base(app.Task):
        custom = "yes"

    typed = Celery("typed", task_cls=Base)

    @typed.task(name="proj.typed")
    def typed_task():
        return 1

    assert isinstance(typed_task, Base) and typed_task.custom == "yes"


def test_signals_module_is_celerys(app):
    assert signals.task_prerun is not None and signals.before_task_publish is not None


def test_app_signature_and_group_result_as_in_celery():
    from django_taskq import Celery, GroupResult, Signature

    app = Celery("proj")
    sig = app.signature("tests.testapp.tasks.add", args=(2, 3), countdown=10)
    assert isinstance(sig, Signature) and sig.args == (2, 3) and sig.options["countdown"] == 10
    assert app.GroupResult is GroupResult
