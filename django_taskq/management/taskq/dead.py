"""``taskq dead list|show|requeue|purge`` (dead letters) and ``taskq revoke``."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import deadletters
from ...exceptions import TaskqError
from .base import Group, add_json, indent, positive, table, when, write_json


class DeadLetters(Group):
    """``taskq dead list|show|requeue|purge``."""

    name = "dead"
    help = "list, inspect, requeue or purge dead letters"

    def add_parsers(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", metavar="<action>", required=True)
        listing = actions.add_parser("list", help="list dead letters, oldest first")
        listing.add_argument("--limit", type=positive, default=100,
                             help="show at most this many (default 100)")
        listing.add_argument("--queue", help="only dead letters from this queue")
        add_json(listing)
        listing.set_defaults(handler=dead_list)
        show = actions.add_parser("show", help="show one dead letter in full")
        show.add_argument("letter_id", metavar="id")
        show.set_defaults(handler=dead_show)
        for name, handler, what in (("requeue", dead_requeue, "send back to their queues"),
                                    ("purge", dead_purge, "delete for good")):
            action = actions.add_parser(name, help=f"{what}: the given ids, or --all")
            action.add_argument("letter_ids", nargs="*", metavar="id")
            action.add_argument("--all", action="store_true", help="every dead letter")
            action.set_defaults(handler=handler)
            if name == "purge":
                action.add_argument("--yes", "--noinput", "--no-input", action="store_true",
                                    dest="yes", help="do not ask for confirmation")


class Revoke(Group):
    """``taskq revoke <id>... [--terminate]``."""

    name = "revoke"
    help = "revoke tasks by id: they never run (durable); --terminate also kills running ones"

    def add_parsers(self, parser: CommandParser) -> None:
        parser.add_argument("task_ids", nargs="+", metavar="task_id")
        parser.add_argument("--terminate", action="store_true",
                            help="also kill an execution that is running (prefork pool)")
        parser.set_defaults(handler=revoke_tasks)


def revoke_tasks(command: BaseCommand, options: dict[str, Any]) -> None:
    from ...result import revoke

    try:
        revoke(options["task_ids"], terminate=options["terminate"])
    except (TaskqError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    how = "revoked and terminated if running" if options["terminate"] else "revoked"
    command.stdout.write(f"{len(options['task_ids'])} task(s) {how}.")


def dead_list(command: BaseCommand, options: dict[str, Any]) -> None:
    letters = deadletters.list_letters(limit=options["limit"], queue=options["queue"])
    total = deadletters.count()
    if options.get("json"):
        write_json(command, {"total": total, "dead_letters": [
            {"id": letter.id, "task_id": letter.envelope.message_id,
             "task": letter.envelope.task_name, "queue": letter.envelope.queue,
             "attempts": letter.attempts, "dead_at": letter.dead_at, "reason": letter.reason}
            for letter in letters]})
        return
    if not letters:
        command.stdout.write("No dead letters." if not total else
                             f"No dead letters from queue {options['queue']!r} "
                             f"(of {total} in all).")
        return
    rows = [("ID", "TASK", "QUEUE", "ATTEMPTS", "DIED", "REASON")]
    rows += [(letter.id, deadletters.one_line(letter.envelope.task_name or "?", 40),
              letter.envelope.queue, str(letter.attempts), when(letter.dead_at),
              deadletters.one_line(letter.reason, 60)) for letter in letters]
    for line in table(rows):
        command.stdout.write(line)
    command.stdout.write(f"\n{len(letters)} shown, {total} dead letter(s) in all.")


def dead_show(command: BaseCommand, options: dict[str, Any]) -> None:
    letter = deadletters.get_letter(options["letter_id"])
    envelope = letter.envelope
    out = command.stdout
    for label, value in (("id", letter.id), ("task id", envelope.message_id),
                         ("task", envelope.task_name), ("queue", envelope.queue),
                         ("attempts", letter.attempts), ("died", when(letter.dead_at)),
                         ("priority", envelope.priority),
                         ("content type", f"{envelope.content_type} ({envelope.content_encoding})")):
        out.write(f"{label + ':':14}{value}")
    out.write(f"reason:\n{indent(letter.reason)}")
    body = deadletters.body_of(letter)
    headers = envelope.headers if body.hidden is None else {
        **envelope.headers, "argsrepr": body.hidden[0], "kwargsrepr": body.hidden[1]}
    out.write(f"headers:\n{indent(deadletters.to_json(headers))}")
    if body.hidden is not None:  # a sensitive task's, or a sender's argsrepr: only the reprs
        out.write(f"args (hidden):\n{indent(body.hidden[0])}")
        out.write(f"kwargs (hidden):\n{indent(body.hidden[1])}")
    elif body.decoded:
        out.write(f"args:\n{indent(deadletters.to_json(body.args))}")
        out.write(f"kwargs:\n{indent(deadletters.to_json(body.kwargs))}")
        if body.embed:
            out.write(f"embed:\n{indent(deadletters.to_json(body.embed))}")
    elif body.json is not None:
        out.write(f"body (JSON):\n{indent(deadletters.to_json(body.json))}")
    else:
        out.write(f"body (raw):\n{indent(str(body.raw))}")


def dead_requeue(command: BaseCommand, options: dict[str, Any]) -> None:
    letter_ids = _chosen(options)
    if letter_ids is not None:
        deadletters.check_known(letter_ids)
    done = deadletters.requeue(letter_ids)
    command.stdout.write(f"Requeued {done} dead letter(s).")
    _check_all_done(letter_ids, done, "requeued")


def dead_purge(command: BaseCommand, options: dict[str, Any]) -> None:
    letter_ids = _chosen(options)
    if letter_ids is not None:
        deadletters.check_known(letter_ids)
    how_many = len(letter_ids) if letter_ids is not None else deadletters.count()
    if not options["yes"] and not _confirmed(how_many, options):
        raise CommandError(f"Not purging {how_many} dead letter(s): purging cannot be undone; "
                           "pass --yes (or --noinput) to purge without a question.")
    done = deadletters.purge(letter_ids)
    command.stdout.write(f"Purged {done} dead letter(s).")
    _check_all_done(letter_ids, done, "purged")


def _chosen(options: dict[str, Any]) -> list[str] | None:
    """The ids given, or None for --all; both or neither is a usage error."""
    letter_ids = list(dict.fromkeys(options["letter_ids"]))
    if options["all"] and letter_ids:
        raise CommandError("Give dead letter ids or --all, not both.", returncode=2)
    if not options["all"] and not letter_ids:
        raise CommandError("Give the ids of the dead letters (see `taskq dead list`), or --all.",
                           returncode=2)
    return None if options["all"] else letter_ids


def _check_all_done(letter_ids: list[str] | None, done: int, what: str) -> None:
    if letter_ids is not None and done < len(letter_ids):
        raise CommandError(f"{len(letter_ids) - done} of the dead letters were gone before they "
                           f"could be {what} (requeued or purged meanwhile?).")


def _confirmed(how_many: int, options: dict[str, Any]) -> bool:
    """Ask on a terminal; elsewhere (scripts, cron, call_command) never assume a yes."""
    if not sys.stdin.isatty() or not options.get("interactive", True):
        return False
    answer = input(f"Purge {how_many} dead letter(s)? This cannot be undone. Type 'yes': ")
    return answer.strip().lower() == "yes"
