"""The shop's audit trail of background work: what ran, where, and how it ended.

Each event is kept in memory (for the tests of this process) and, when PROJ_AUDIT_LOG names a
file, appended to it as one JSON line, so that events from worker processes can be read back.
"""

import json
import os

events = []


def record(event, **details):
    entry = {"event": event, "pid": os.getpid(), **details}
    events.append(entry)
    path = os.environ.get("PROJ_AUDIT_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry, default=repr) + "\n")
