"""The checks of what users pass: each names the option, the value and what is expected."""

from __future__ import annotations

import math
import re

import pytest

from runtime import options
from runtime.clock import Clock


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("10", TypeError, "idle_after must be a positive number of seconds (or math.inf), "
                          "not '10' (a str)"),
        (None, TypeError, "not None"),
        (True, TypeError, "not True"),
        (0, ValueError, "not 0 (an int)"),
        (-1.5, ValueError, "not -1.5 (a float)"),
        (math.nan, ValueError, "not nan (a float)"),
    ],
)  # fmt: skip
def test_seconds_names_the_option_the_value_and_what_is_expected(
    value: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        options.seconds("idle_after", value, infinite=True)


def test_seconds_gives_floats_and_takes_infinity_only_where_allowed() -> None:
    assert options.seconds("t", 3) == 3.0 and type(options.seconds("t", 3)) is float
    assert options.seconds("t", math.inf, infinite=True) == math.inf
    with pytest.raises(ValueError, match=r"t must be a positive number of seconds \(finite"):
        options.seconds("t", math.inf)


@pytest.mark.parametrize(
    ("value", "error"),
    [("2", TypeError), (-1, ValueError), (0, ValueError), (0.0, ValueError),
     (math.nan, ValueError), (math.inf, ValueError), (False, TypeError), ([1], TypeError)],
)  # fmt: skip
def test_timeout_refuses_what_is_not_a_finite_positive_number(
    value: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match=rf"^timeout must be a positive number of seconds .*{value!r}"):
        options.timeout(value)


def test_timeout_keeps_floats_and_makes_ints_floats() -> None:
    assert options.timeout(2.5) == 2.5
    assert options.timeout(2) == 2.0 and type(options.timeout(2)) is float


@pytest.mark.parametrize("value", ["no", "yes", 0, 1, None, "False"])
def test_flag_is_true_or_false_and_nothing_else(value: object) -> None:
    with pytest.raises(
        TypeError, match=rf"^reentrant must be True or False, not {re.escape(repr(value))}"
    ):
        options.flag("reentrant", value)
    assert options.flag("reentrant", True) is True and options.flag("reentrant", False) is False


def test_count_one_of() -> None:
    assert options.count("max_workers", 3, minimum=1) == 3
    with pytest.raises(ValueError, match=r"^max_workers must be an int >= 1, not 0$"):
        options.count("max_workers", 0, minimum=1)
    with pytest.raises(TypeError, match=r"^max_workers must be an int >= 1, not 2.0 \(a float\)"):
        options.count("max_workers", 2.0, minimum=1)
    assert options.one_of("placement", "hash", ("hash", "data")) == "hash"
    with pytest.raises(ValueError, match=r"^placement must be one of 'hash', 'data', not 'ring'$"):
        options.one_of("placement", "ring", ("hash", "data"))
    with pytest.raises(TypeError, match=r"^placement must be one of 'hash', not 1 \(an int\)$"):
        options.one_of("placement", 1, ("hash",))


def test_resources() -> None:
    assert options.resources("resources", None) == {}
    assert options.resources("resources", {"gpu": 1, "mem": 2.5}) == {"gpu": 1.0, "mem": 2.5}
    expected = "resources must be a mapping of resource names to numbers >= 0, e.g. {'gpu': 1}"
    cases: list[tuple[object, type[Exception], str]] = [
        ("gpu=1", TypeError, f"{expected}, not 'gpu=1' (a str)"),
        ({"gpu": "1"}, TypeError, f"{expected}: 'gpu' is '1' (a str)"),
        ({"gpu": True}, TypeError, f"{expected}: 'gpu' is True"),
        ({"gpu": -1}, ValueError, f"{expected}: 'gpu' is -1"),
        ({"gpu": math.nan}, ValueError, f"{expected}: 'gpu' is nan"),
        ({"gpu": math.inf}, ValueError, f"{expected}: 'gpu' is inf"),
        ({1: 1}, TypeError, f"{expected}: the name 1 (an int) is not a name"),
        ({"": 1}, TypeError, f"{expected}: the name '' (a str) is not a name"),
    ]
    for value, error, message in cases:
        with pytest.raises(error, match=f"^{re.escape(message)}$"):
            options.resources("resources", value)


@pytest.mark.parametrize(
    "value",
    ["tcp://127.0.0.1:5700", "tcp://127.0.0.1:0", "tcp://*:5700", "tcp://node-1.example:80",
     "tcp://[::1]:5700", "ipc:///tmp/shoal.sock", "mem://a", "mem://"],
)  # fmt: skip
def test_addresses_the_transports_support(value: str) -> None:
    assert options.address("listen", value) == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("127.0.0.1:5700", "listen '127.0.0.1:5700' has no scheme: expected tcp://HOST:PORT, "
                           "ipc://PATH or mem://NAME (did you mean 'tcp://127.0.0.1:5700'?)"),
        ("localhost", "listen 'localhost' has no scheme: expected tcp://HOST:PORT, ipc://PATH "
                      "or mem://NAME"),
        ("tcp://127.0.0.1", "listen 'tcp://127.0.0.1' is not tcp://HOST:PORT (a port in 0..65535)"),
        ("tcp://127.0.0.1:70000", "listen 'tcp://127.0.0.1:70000' is not tcp://HOST:PORT"),
        ("tcp://:5700", "listen 'tcp://:5700' is not tcp://HOST:PORT"),
        ("tcp://a b:1", "listen 'tcp://a b:1' is not tcp://HOST:PORT"),
        ("ipc://", "listen 'ipc://' is not ipc://PATH"),
        ("udp://127.0.0.1:5700", "listen 'udp://127.0.0.1:5700' has an unknown scheme 'udp': "
                                 "expected tcp://HOST:PORT, ipc://PATH or mem://NAME"),
    ],
)  # fmt: skip
def test_bad_addresses_say_what_is_wrong(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        options.address("listen", value)


def test_addresses_are_a_list_not_a_string() -> None:
    assert options.addresses("seeds", ("tcp://a:1",)) == ["tcp://a:1"]
    with pytest.raises(
        TypeError,
        match=re.escape(
            "seeds must be a list of addresses, not 'tcp://a:1' (a str): use seeds=['tcp://a:1']"
        ),
    ):
        options.addresses("seeds", "tcp://a:1")
    with pytest.raises(TypeError, match=r"^seeds must be an address .*not 5700 \(an int\)"):
        options.addresses("seeds", [5700])


@pytest.mark.parametrize(
    "url",
    ["memory://", "sqlite:///state.db", "sqlite:////var/lib/shoal.db", "postgresql://u@h/db",
     "redis://localhost:6379/0"],
)  # fmt: skip
def test_storage_urls_of_the_api(url: str) -> None:
    assert options.storage_url(url) == url


@pytest.mark.parametrize(
    "url", ["state.db", "sqlite://state.db", "sqlite:///", "mysql://h/db", "memory://x", "redis://",
            "postgres://h/db", "file:///tmp/x", ""],
)  # fmt: skip
def test_other_storage_urls_fail_naming_the_url(url: str) -> None:
    message = (
        f"storage URL {url!r} is not supported: expected memory://, sqlite:///PATH, "
        "postgresql://... or redis://..."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        options.storage_url(url)
    with pytest.raises(TypeError, match=r"^storage must be a URL"):
        options.storage_url(3)


def _node(**given: object) -> options.NodeOptions:
    args: dict[str, object] = {
        "listen": None,
        "seeds": (),
        "storage": None,
        "resources": None,
        "default_timeout": 30.0,
        "check_serializable": True,
        "serve": None,
        "transport": None,
        "max_frame_size": 1 << 20,
        "join_timeout": 10.0,
        "clock": None,
        "rebalance_period": 1.0,
    }
    args.update(given)
    return options.node(**args)  # type: ignore[arg-type]


def test_node_options_checked_and_normalised() -> None:
    checked = _node(
        listen="tcp://127.0.0.1:0",
        seeds=("tcp://127.0.0.1:5700",),
        resources={"gpu": 1},
        default_timeout=2,
        serve=("Counter",),
        clock=Clock(),
    )
    assert checked.listen == "tcp://127.0.0.1:0" and checked.seeds == ["tcp://127.0.0.1:5700"]
    assert checked.resources == {"gpu": 1.0} and checked.default_timeout == 2.0
    assert checked.serve == ["Counter"]


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        ({"listen": "127.0.0.1:0"}, ValueError, "listen '127.0.0.1:0' has no scheme"),
        ({"seeds": "tcp://127.0.0.1:1"}, TypeError, "seeds must be a list of addresses"),
        ({"seeds": ["127.0.0.1:1"]}, ValueError, "seeds '127.0.0.1:1' has no scheme"),
        ({"storage": 5}, TypeError, "storage must be a URL"),
        ({"resources": {"gpu": "one"}}, TypeError, "resources must be a mapping"),
        ({"default_timeout": "30"}, TypeError, "default_timeout must be a positive number"),
        ({"default_timeout": 0}, ValueError, "default_timeout must be a positive number"),
        ({"check_serializable": "yes"}, TypeError, "check_serializable must be True or False"),
        ({"serve": "Counter"}, TypeError, "serve must be a list of @actor classes or actor "
                                          "names (or None: every imported type), not 'Counter' "
                                          "(a str): use serve=['Counter']"),
        ({"serve": [3]}, TypeError, "serve must be a list of @actor classes"),
        ({"max_frame_size": 100}, ValueError, "max_frame_size must be an int >= 4096, not 100"),
        ({"max_frame_size": 1e6}, TypeError, "max_frame_size must be an int >= 4096"),
        ({"join_timeout": -1}, ValueError, "join_timeout must be a positive number"),
        ({"clock": object()}, TypeError, "clock must be a runtime.clock.Clock"),
        ({"transport": object()}, TypeError, "transport must be a runtime.transport.Transport"),
        ({"rebalance_period": "1"}, TypeError, "rebalance_period must be a positive number"),
        ({"listen": "mem://a", "seeds": ["tcp://127.0.0.1:1"]}, ValueError,
         "listen and seeds must be on one network: 'mem://a' is on the in-process network "
         "(mem://), 'tcp://127.0.0.1:1' is not"),
    ],
)  # fmt: skip
def test_node_options_refused(
    given: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}"):
        _node(**given)
