"""Keep broker and result URLs' passwords off Django's error pages and error e-mails.

Django's ``SafeExceptionReporterFilter`` hides settings whose *name* looks secret (``PASSWORD``,
``KEY``...), but not ``TASKQ['BROKER_URL']`` or ``CELERY_BROKER_URL``, whose *value* holds the
password. Set::

    DEFAULT_EXCEPTION_REPORTER_FILTER = "django_taskq.security.TaskqExceptionReporterFilter"

and every value that holds a URL with a password (settings, nested ones included, a frame's
local variables, POST data, META and cookies; not the URL's query string) is shown masked
(``redis://:****@host``), on the DEBUG page too, besides what Django hides by default. Check
``django_taskq.W016`` warns while DEBUG is on, the filter is not set and a TASKQ or Celery URL
carries a password.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, QueryDict
from django.views.debug import SafeExceptionReporterFilter

from .service_url import mask_text

#: The value of DEFAULT_EXCEPTION_REPORTER_FILTER that installs the filter.
FILTER_PATH = "django_taskq.security.TaskqExceptionReporterFilter"


class Masked:
    """A value shown by its repr with the URLs' passwords masked (pprint uses the repr)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def masked(value: Any) -> Any:
    """``value`` itself when showing it reveals no URL password, else a masked stand-in: the
    text masked, or for any other object its repr masked."""
    if isinstance(value, str):
        return mask_text(value)
    if value is None or isinstance(value, (bool, int, float, bytes)):
        return value
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - Django shows its own note for a broken repr
        return value
    shown = mask_text(text)
    return value if shown == text else Masked(shown)


class TaskqExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter, plus: URLs with passwords are masked wherever they are shown, whether
    or not DEBUG is on (the DEBUG page is where they would be seen)."""

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        """A setting (or META entry, cookie) as Django cleanses it, URLs in it masked."""
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, (dict, list, tuple)):
            return cleansed  # Django cleansed each item through this method already
        return masked(cleansed)

    def cleanse_special_types(self, request: HttpRequest | None, value: Any) -> Any:
        """A frame's local variable as Django shows it, URLs in it masked."""
        return masked(super().cleanse_special_types(request, value))

    def get_post_parameters(self, request: HttpRequest | None) -> Any:
        """The POST data, each value that holds a URL with a password masked."""
        post = super().get_post_parameters(request)
        if not isinstance(post, QueryDict):
            return post
        cleaned = post.copy()
        for key in cleaned:
            cleaned.setlist(key, [mask_text(v) if isinstance(v, str) else v
                                  for v in post.getlist(key)])
        return cleaned
