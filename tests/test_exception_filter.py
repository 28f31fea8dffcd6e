"""Django's debug page with TaskqExceptionReporterFilter: URLs with passwords (settings, TASKQ
and CELERY_* included, a frame's local variables, POST data) are shown masked; check W016 asks
for the filter while DEBUG is on and a URL holds a password."""

from __future__ import annotations

import sys

import pytest
from django.test import RequestFactory
from django.views.debug import get_default_exception_reporter_filter, technical_500_response

from django_taskq import checks
from django_taskq.service_url import parse

SECRET = "s3cr3t-pw"
URL = f"redis://:{SECRET}@cache.internal:6379/0"
FILTER = "django_taskq.security.TaskqExceptionReporterFilter"


@pytest.fixture(autouse=True)
def fresh_filter():
    """Django builds the filter once per process (lru_cache) from the setting these tests
    change; forget it around each test."""
    get_default_exception_reporter_filter.cache_clear()
    yield
    get_default_exception_reporter_filter.cache_clear()


def connect(broker_url: str) -> None:
    parsed = parse(broker_url, setting="BROKER_URL")  # noqa: F841 - a local the page shows
    options = {"urls": [broker_url], "query": f"amqp://u:{SECRET}@r//?x=1"}  # noqa: F841
    raise ConnectionError("the broker went away")


def debug_page(settings) -> str:
    """Django's technical 500 page for an error raised with URLs in the frame's locals."""
    settings.TASKQ = {**settings.TASKQ, "RESULT_BACKEND": URL}
    settings.CELERY_BROKER_URL = f"amqp://guest:{SECRET}@rabbit//"
    request = RequestFactory().post("/send/", {"target": URL, "note": "hello"})
    try:
        connect(URL)
    except ConnectionError:
        return technical_500_response(request, *sys.exc_info()).content.decode()
    raise AssertionError("connect() raised nothing")


@pytest.mark.django_db
def test_the_debug_page_shows_urls_masked(settings):
    settings.DEBUG = True
    settings.DEFAULT_EXCEPTION_REPORTER_FILTER = FILTER
    page = debug_page(settings)
    assert SECRET not in page
    assert "redis://:****@cache.internal:6379/0" in page  # the local, the setting, POST data
    assert "amqp://guest:****@rabbit//" in page  # CELERY_BROKER_URL
    assert "ParsedUrl(&#x27;redis://:****@cache.internal:6379/0&#x27;)" in page
    assert "hello" in page and "the broker went away" in page  # the rest is shown as ever


@pytest.mark.django_db
def test_without_the_filter_the_debug_page_would_show_the_password(settings):
    settings.DEBUG = True
    assert SECRET in debug_page(settings)  # what check W016 warns about


def test_check_w016_asks_for_the_filter_while_debug_shows_a_password(settings):
    settings.DEBUG = True
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": URL}
    [warning] = checks.check_exception_filter()
    assert warning.id == "django_taskq.W016"
    assert f"DEFAULT_EXCEPTION_REPORTER_FILTER = '{FILTER}'" in warning.hint
    assert SECRET not in warning.msg + warning.hint
    settings.DEFAULT_EXCEPTION_REPORTER_FILTER = FILTER
    assert checks.check_exception_filter() == []


def test_check_w016_is_quiet_without_debug_or_without_a_password(settings):
    settings.DEBUG = False
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": URL}
    assert checks.check_exception_filter() == []
    settings.DEBUG = True
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "redis://cache.internal/0"}
    assert checks.check_exception_filter() == []
    settings.CELERY_RESULT_BACKEND = f"redis://:{SECRET}@cache.internal/1"  # Celery's name
    assert [m.id for m in checks.check_exception_filter()] == ["django_taskq.W016"]
