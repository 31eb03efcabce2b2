"""Log lines a peer cannot forge, and the throttle of repeated failures (no sleeps: the
throttle's clock is moved by hand)."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from runtime.logs import ESCAPE, LOGGERS, Throttle, escape, last_frame

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Counter", "Counter"),
        ("tcp://127.0.0.1:5700", "tcp://127.0.0.1:5700"),
        ("héllo wörld", "héllo wörld"),
        ("k\nERROR forged line", "'k\\nERROR forged line'"),
        ("a\rb", "'a\\rb'"),
        ("tab\there", "'tab\\there'"),
        ("nul\x00", "'nul\\x00'"),
        ("sep\u2028x", "'sep\\u2028x'"),
        ("esc\x1b[31m", "'esc\\x1b[31m'"),
    ],
)
def test_escape_keeps_printable_text_and_quotes_the_rest(text: str, shown: str) -> None:
    assert escape(text) == shown
    assert "\n" not in escape(text) and "\r" not in escape(text)


def test_escape_takes_any_object() -> None:
    assert escape(ValueError("bad\nvalue")) == "'bad\\nvalue'"
    assert escape(3) == "3"

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError

    assert escape(Unprintable()) == "<unprintable Unprintable>"


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("shoal.node", logging.WARNING, __file__, 1, msg, args, None)


def test_the_filter_escapes_arguments_so_a_record_is_one_line() -> None:
    record = _record(
        "tell to %s/%s dropped: %s (%d)", "Counter", "k\nFORGED", ValueError("x\ny"), 3
    )
    assert ESCAPE.filter(record)
    assert record.getMessage() == "tell to Counter/'k\\nFORGED' dropped: 'x\\ny' (3)"
    mapped = logging.LogRecord(
        "shoal.node", logging.WARNING, __file__, 1, "%(key)s", ({"key": "a\nb"},), None
    )
    ESCAPE.filter(mapped)
    assert mapped.getMessage() == "'a\\nb'"
    bare = _record("pre-formatted\nline")
    ESCAPE.filter(bare)
    assert bare.getMessage() == "'pre-formatted\\nline'"


def test_every_logger_of_the_runtime_escapes() -> None:
    """Every ``logging.getLogger("shoal....")`` in the packages is one of LOGGERS, and each of
    them has the filter (installed by importing runtime.logs)."""
    names: set[str] = set()
    for path in sorted(ROOT.glob("*/*.py")):
        if path.parent.name not in ("actors", "router", "runtime"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "getLogger"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names.add(str(node.args[0].value))
    assert names and names <= set(LOGGERS), sorted(names - set(LOGGERS))
    for name in LOGGERS:
        assert ESCAPE in logging.getLogger(name).filters, name


def test_a_forged_key_cannot_start_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="shoal.node")
    logging.getLogger("shoal.node").warning("tell to %s/%s dropped", "T", "x\n2026 ERROR fake")
    [line] = caplog.text.splitlines()
    assert line.endswith("tell to T/'x\\n2026 ERROR fake' dropped")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_admits_one_event_per_key_per_interval_and_counts_the_rest() -> None:
    clock = FakeClock()
    throttle = Throttle(10.0, clock)
    assert throttle.admit("a") == 0
    assert [throttle.admit("a") for _ in range(5)] == [None] * 5
    assert throttle.admit("b") == 0  # keys are apart
    clock.now += 9.9
    assert throttle.admit("a") is None
    clock.now += 0.1
    assert throttle.admit("a") == 6  # the six left out since the one admitted
    assert throttle.admit("a") is None
    assert throttle.drain() == [("a", 1)]
    assert throttle.drain() == []
    clock.now += 10
    assert throttle.admit("a") == 0  # drained: reported already


def test_throttle_bounds_the_keys_it_remembers() -> None:
    clock = FakeClock()
    throttle = Throttle(10.0, clock, max_keys=3)
    assert [throttle.admit(k) for k in "abc"] == [0, 0, 0]
    assert throttle.admit("d") == 0  # full: new keys share one key
    assert throttle.admit("e") is None
    clock.now += 10  # a, b, c, not seen for an interval and with nothing left out: forgotten
    assert throttle.admit("f") == 0
    assert throttle.admit("f") is None


def test_last_frame_of_a_traceback() -> None:
    try:
        raise ValueError("x")
    except ValueError as exc:
        import traceback

        text = "".join(traceback.format_exception(exc))
    where = last_frame(text)
    assert where.startswith(str(Path(__file__))) and where.endswith(
        " in test_last_frame_of_a_traceback"
    )
    assert last_frame("no traceback") == ""
