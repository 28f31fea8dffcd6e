"""Periodic tasks (beat): schedules stored in the database, fired exactly once per tick.

``models`` holds the tables, ``timing`` turns a row into ticks, ``claims`` fires one tick exactly
once, ``scheduler`` is one beat's loop step, ``declared`` upserts schedules declared in code, and
``service`` runs the loop in ``manage.py taskbeat`` or inside ``taskworker --beat``.
"""
