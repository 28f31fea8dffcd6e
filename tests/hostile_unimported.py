"""A module hostile result or message data names in tests/test_hostile_data.py.

Nothing may import it: the tests check that it stays out of ``sys.modules``. Importing it
leaves a mark in the environment, as a real attacker's module would do something worse.
"""

from __future__ import annotations

import os

os.environ["TASKQ_HOSTILE_MODULE_IMPORTED"] = "1"


class Boom(Exception):
    """An exception whose constructor has a side effect."""

    def __init__(self, *args: object) -> None:
        os.environ["TASKQ_HOSTILE_BOOM_MADE"] = "1"
        super().__init__(*args)
