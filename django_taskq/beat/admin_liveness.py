"""Is a beat running? The rule the admin uses, and the warning it shows when none is.

A beat writes its ``BeatInstance.last_tick_at`` every ``scheduler.LIVENESS_INTERVAL`` seconds
(when it sleeps longer than that between steps, at each step): a beat whose row is older than
:func:`alive_within` has stopped, or cannot reach the database.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Max
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..conf import get_settings
from .admin_display import current_zone, moment_in
from .models import BeatInstance, PeriodicTask
from .scheduler import LIVENESS_INTERVAL

#: Seconds: a beat that ticked within this long is alive (longer when beat steps are longer).
ALIVE_WITHIN = 60.0


def alive_within() -> float:
    """Seconds since its last tick within which a beat counts as alive: 60, or more when
    BEAT_SYNC_INTERVAL lets a beat sleep longer between liveness writes."""
    conf = get_settings()
    step = min(conf.BEAT_SYNC_INTERVAL, conf.BEAT_MAX_LOOP_INTERVAL)
    return max(ALIVE_WITHIN, 2 * max(step, LIVENESS_INTERVAL))


def is_alive(last_tick_at: datetime, now: datetime | None = None) -> bool:
    """Whether a beat that last ticked at ``last_tick_at`` is still ticking."""
    now = now or timezone.now()
    return (now - last_tick_at).total_seconds() <= alive_within()


def no_beat_warning(now: datetime | None = None) -> SafeString | None:
    """The warning for the periodic task list: enabled tasks, and no beat ticked recently
    (None when a beat is alive or nothing is enabled)."""
    now = now or timezone.now()
    if not PeriodicTask.objects.filter(enabled=True).exists():
        return None
    cutoff = now - timedelta(seconds=alive_within())
    last: datetime | None = BeatInstance.objects.aggregate(at=Max("last_tick_at"))["at"]
    if last is not None and last >= cutoff:
        return None
    since = "yet" if last is None else f"since {moment_in(last, current_zone())}"
    return format_html(
        "No beat has ticked {}: enabled periodic tasks are not being sent. Run "
        "<code>python manage.py taskbeat</code> or <code>taskworker --beat</code>.", since)
