"""Log lines that a peer cannot forge, and failures logged once per interval with a count.

Actor keys, method names, addresses and error messages that reach a log line may come from a
peer. :func:`escape` gives such a string as it is when it is printable, else its ``repr``
(quoted, with newlines and other control characters escaped), so no field can start a line of
its own. :data:`ESCAPE` applies it to the arguments of every record of the runtime's loggers
(:data:`LOGGERS`, installed when this module is imported): messages are written
``log.warning("... %s", value)``, never pre-formatted, so the arguments are what varies.

:class:`Throttle` lets one event per key through per interval and counts the others; the next
event let through reports the count. Time comes from a callable (the node's clock,
``runtime.clock.Clock.wall``), so tests move it by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import Any, Final

__all__ = ["ESCAPE", "LOGGERS", "EscapeFilter", "Throttle", "escape", "last_frame"]


def escape(text: object) -> str:
    """``text`` (or its ``str``) as one printable line: itself when it is printable, else its
    ``repr``, quoted, with newlines and control characters escaped."""
    if not isinstance(text, str):
        try:
            text = str(text)
        except Exception:
            return f"<unprintable {type(text).__name__}>"
    return text if text.isprintable() else repr(text)


def _safe(value: Any) -> Any:
    if isinstance(value, str | BaseException):
        return escape(value)
    return value  # numbers; containers format their items with repr, which escapes


class EscapeFilter(logging.Filter):
    """Escapes the string (and exception) arguments of a record, and a message given without
    arguments, so that a record is always one line (a traceback attached with ``exc_info``
    stays as it is: it is the runtime's own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if args:
            if isinstance(args, tuple):
                record.args = tuple(_safe(a) for a in args)
            else:
                record.args = {k: _safe(v) for k, v in args.items()}
        elif isinstance(record.msg, str) and not record.msg.isprintable():
            record.msg = escape(record.msg)
        return True


ESCAPE: Final = EscapeFilter()

#: The runtime's loggers, each of which escapes its records.
LOGGERS: Final = (
    "shoal.actor",
    "shoal.catalog",
    "shoal.cluster",
    "shoal.control",
    "shoal.messaging",
    "shoal.migration",
    "shoal.node",
    "shoal.rebalancer",
    "shoal.security",
    "shoal.transport",
)

for _name in LOGGERS:
    logging.getLogger(_name).addFilter(ESCAPE)


def last_frame(traceback_text: str) -> str:
    """Where a formatted traceback ends: ``path:line in function`` of its last frame, or ""."""
    found = ""
    for line in traceback_text.splitlines():
        stripped = line.strip()
        if stripped.startswith('File "'):
            try:
                path, rest = stripped[6:].split('", line ', 1)
                number, _, function = rest.partition(", in ")
                found = f"{path}:{int(number)} in {function}"
            except ValueError:
                continue
    return found


class Throttle:
    """One event per key per ``interval`` seconds; the others are counted.

    :meth:`admit` answers None for an event to leave out, else how many events of its key
    were left out since the last one admitted. At most ``max_keys`` keys are remembered (keys
    may be chosen by a peer): past that, those not seen for an interval are forgotten, and
    if none is, events of new keys share one key, ``None``.
    """

    __slots__ = ("_entries", "_max_keys", "_now", "interval")

    def __init__(self, interval: float, now: Callable[[], float], max_keys: int = 1024) -> None:
        self.interval = interval
        self._now = now
        self._max_keys = max_keys
        #: key -> [time of the last event admitted, events left out since]
        self._entries: dict[Hashable, list[float]] = {}

    def admit(self, key: Hashable) -> int | None:
        now = self._now()
        entries = self._entries
        entry = entries.get(key)
        if entry is None:
            if len(entries) >= self._max_keys:
                self._forget(now)
                if len(entries) >= self._max_keys:
                    key = None
                    entry = entries.get(key)
            if entry is None:
                entries[key] = [now, 0]
                return 0
        if now - entry[0] >= self.interval:
            left_out = int(entry[1])
            entry[0], entry[1] = now, 0
            return left_out
        entry[1] += 1
        return None

    def _forget(self, now: float) -> None:
        old = [k for k, e in self._entries.items() if now - e[0] >= self.interval and not e[1]]
        for k in old:
            del self._entries[k]

    def drain(self) -> list[tuple[Hashable, int]]:
        """The keys with events left out and not reported yet, with their counts (reset)."""
        out = [(k, int(e[1])) for k, e in self._entries.items() if e[1]]
        for k, _ in out:
            self._entries[k][1] = 0
        return out
