"""Tests for runtime.wire: codec, envelopes, frames, wire errors, and a slow fuzz test."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import threading
import time
from collections import OrderedDict
from enum import IntEnum
from typing import Any, NamedTuple

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.errors import (
    ActorError,
    ActorTimeout,
    Deadlock,
    MessageTooLarge,
    NodeUnavailable,
    Overloaded,
    ProtocolError,
    RemoteError,
    SerializationError,
    UnknownActorType,
    UnknownMethod,
)
from runtime import wire
from runtime.wire import (
    ASK,
    CONTROL,
    DEFAULT_CODEC,
    ERR_DEADLOCK,
    ERROR,
    F_CORR,
    F_DEADLINE,
    F_KIND,
    F_WAITS,
    MAX_EXT_DEPTH,
    REPLY,
    TELL,
    VERSION,
    Codec,
    Envelope,
    Kind,
    body_to_error,
    check_serializable,
    decode_fields,
    decode_frame,
    encode_envelope,
    encode_frame,
    encode_request,
    envelope_of,
    error_reply,
    error_to_body,
    reply_to,
)

U64 = 2**64 - 1

# -- strategies ------------------------------------------------------------------------------

ints = st.integers(min_value=-(2**63), max_value=U64)
scalars = (
    st.none()
    | st.booleans()
    | ints
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.binary(max_size=30)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8) | ints, inner, max_size=5)
    ),
    max_leaves=25,
)
u64 = st.integers(min_value=0, max_value=U64)


@st.composite
def waits_lists(draw: st.DrawFn) -> list[Any]:
    """Valid ``waits`` fields: entries whose parents point before them (or -1)."""
    out: list[Any] = []
    for i in range(draw(st.integers(0, 5))):
        out += [draw(st.text(max_size=10)), draw(st.text(max_size=10)), draw(u64)]
        out.append(draw(st.integers(-1, i - 1)))
    return out


envelopes = st.builds(
    Envelope,
    kind=st.sampled_from([ASK, TELL, REPLY, ERROR, CONTROL]),
    corr=u64,
    sender=st.text(max_size=30),
    type_name=st.text(max_size=20),
    key=st.text(max_size=20),
    method=st.text(max_size=20),
    args=st.lists(values, max_size=4),
    kwargs=st.dictionaries(st.text(max_size=10), values, max_size=4),
    deadline=st.floats(min_value=0.0, allow_nan=False, allow_infinity=False),
    hops=st.integers(min_value=0, max_value=2**32 - 1),
    trace=u64,
    epoch=u64,
    body=values,
    waits=waits_lists(),
)

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def same(a: Any, b: Any) -> bool:
    """Equality that also requires equal types (so True != 1 and 1 != 1.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, Envelope):
        return (
            all(same(getattr(a, f), getattr(b, f)) for f in Envelope.__slots__ if f != "deadline")
            and a.deadline == b.deadline
        )
    return bool(a == b)


def ask(**kw: Any) -> Envelope:
    base: dict[str, Any] = {
        "kind": ASK,
        "corr": 17,
        "sender": "tcp://127.0.0.1:5555",
        "type_name": "Counter",
        "key": "alice",
        "method": "incr",
        "args": [1, "two"],
        "kwargs": {"by": 3},
        "deadline": 1_700_000_000.25,
        "hops": 1,
        "trace": 0xDEADBEEFCAFEBABE,
        "epoch": 4,
        "body": None,
    }
    base.update(kw)
    return Envelope(**base)


def raw_envelope(**kw: Any) -> list[Any]:
    """The wire array of a valid envelope (its first 14 fields: ``waits`` left out), with
    fields overridden by name."""
    order = [
        "version",
        "kind",
        "corr",
        "body",
        "type_name",
        "key",
        "method",
        "args",
        "deadline",
        "trace",
        "kwargs",
        "hops",
        "sender",
        "epoch",
    ]
    vals: dict[str, Any] = dict(
        zip(order, msgpack.unpackb(encode_envelope(ask()), strict_map_key=False), strict=True)
    )
    vals.update(kw)
    return [vals[name] for name in order]


def decodes_or_protocol_error(data: bytes, codec: Codec = DEFAULT_CODEC) -> list[Envelope] | None:
    try:
        out = decode_frame(data, codec)
    except ProtocolError:
        return None
    assert isinstance(out, list) and out
    assert all(isinstance(e, Envelope) for e in out)
    return out


# -- user types ------------------------------------------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass(frozen=True)
class Segment:
    a: Point
    b: Point
    tags: list[str]


@dataclasses.dataclass
class Odd:
    name: str
    size: int = dataclasses.field(default=0, kw_only=True)
    cache: dict[str, int] = dataclasses.field(default_factory=dict, init=False)


class Money:
    def __init__(self, cents: int, currency: str) -> None:
        self.cents = cents
        self.currency = currency

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and (self.cents, self.currency) == (
            other.cents,
            other.currency,
        )

    __hash__ = None  # type: ignore[assignment]


class Pair(NamedTuple):
    left: Any
    right: Any


class Color(IntEnum):
    RED = 1


class MyErr(Exception):
    pass


class MyMethodError(UnknownMethod):
    pass


def user_codec() -> Codec:
    c = Codec()
    c.register_dataclass(Point, 10)
    c.register_dataclass(Segment, 11)
    c.register(Money, 12, lambda m: [m.cents, m.currency], lambda d: Money(d[0], d[1]))
    return c


# -- round trips -----------------------------------------------------------------------------


@given(envelopes)
def test_roundtrip_single(env: Envelope) -> None:
    data = encode_envelope(env)
    assert 0x94 <= data[0] <= 0x9F and data[1] == VERSION  # fixarray(4..15), version
    fields = msgpack.unpackb(data, strict_map_key=False)
    assert fields[-1] or len(fields) == 4  # trailing defaults are left out
    (back,) = decode_frame(data)
    assert same(back, env)


@given(st.lists(envelopes, min_size=1, max_size=6))
def test_roundtrip_multi_envelope_frame(envs: list[Envelope]) -> None:
    frame = b"".join(encode_envelope(e) for e in envs)
    assert frame == encode_frame(envs)
    back = decode_frame(frame)
    assert len(back) == len(envs)
    assert all(same(a, b) for a, b in zip(back, envs, strict=True))


@given(st.lists(envelopes, min_size=1, max_size=6))
def test_decode_fields_gives_the_validated_arrays_of_decode_frame(envs: list[Envelope]) -> None:
    frame = encode_frame(envs)
    items = decode_fields(frame)
    assert len(items) == len(envs)
    for fields, env in zip(items, envs, strict=True):
        assert fields[0] == VERSION and len(fields) == 15
        assert (fields[F_KIND], fields[F_CORR]) == (env.kind, env.corr)
        assert same(envelope_of(fields), env)


def test_decode_fields_validates_like_decode_frame() -> None:
    for bad in (raw_envelope(kind=9), raw_envelope(corr=-1), raw_envelope(sender=3)):
        with pytest.raises(ProtocolError):
            decode_fields(msgpack.packb(bad))
    (fields,) = decode_fields(msgpack.packb(raw_envelope(deadline=12)))
    assert type(fields[F_DEADLINE]) is float  # an int deadline is made a float, as in decode_frame


@given(values)
def test_check_serializable_accepts_msgpack_values(value: Any) -> None:
    check_serializable(DEFAULT_CODEC, value)
    assert same(DEFAULT_CODEC.unpackb(DEFAULT_CODEC.packb(value)), value)


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind(kind: Kind) -> None:
    env = ask(kind=int(kind), body={"k": [1, 2.5, b"x"]})
    (back,) = decode_frame(encode_envelope(env))
    assert back == env and back.kind == kind and type(back.kind) is int


def test_defaults_and_tuples() -> None:
    env = Envelope(TELL, args=(1, (2, 3)))  # type: ignore[arg-type]
    (back,) = decode_frame(encode_envelope(env))
    assert back.args == [1, [2, 3]]  # tuples come back as lists
    assert (back.corr, back.sender, back.kwargs, back.deadline, back.body) == (0, "", {}, 0.0, None)


def test_left_out_fields_take_their_defaults() -> None:
    (reply,) = decode_frame(msgpack.packb([VERSION, REPLY, 7, {"n": 1}]))
    assert reply == Envelope(REPLY, 7, body={"n": 1})
    assert encode_envelope(reply) == msgpack.packb([VERSION, REPLY, 7, {"n": 1}])
    tell = Envelope(TELL, type_name="T", key="k", method="m", args=[1], trace=9)
    assert msgpack.unpackb(encode_envelope(tell)) == [
        VERSION,
        TELL,
        0,
        None,
        "T",
        "k",
        "m",
        [1],
        0.0,
        9,
    ]
    a, b = decode_frame(encode_frame([Envelope(TELL), Envelope(TELL)]))
    assert a.args is not b.args and a.kwargs is not b.kwargs  # defaults are fresh objects


def test_int_deadline_becomes_float() -> None:
    (back,) = decode_frame(msgpack.packb(raw_envelope(deadline=12)))
    assert back.deadline == 12.0 and type(back.deadline) is float


def test_big_and_edge_values() -> None:
    body = [U64, -(2**63), 0.0, -0.0, float("inf"), "é🙂", b"\x00" * 300, {1: "int key"}]
    (back,) = decode_frame(encode_envelope(ask(body=body, trace=U64, epoch=U64, corr=U64)))
    assert same(back.body, body) and back.trace == U64


def test_registered_types_nested() -> None:
    c = user_codec()
    seg = Segment(Point(1, 2), Point(3, 4), ["a"])
    body = {"seg": seg, "prices": [Money(100, "EUR"), Money(5, "USD")], "deep": [[seg]]}
    env = ask(args=[Point(0, 0)], kwargs={"m": Money(1, "GBP")}, body=body)
    (back,) = decode_frame(encode_envelope(env, c), c)
    assert back == env
    assert isinstance(back.body["seg"].a, Point)
    # the default codec does not know these types
    with pytest.raises(ProtocolError, match="unknown ext type code"):
        decode_frame(encode_envelope(env, c))
    with pytest.raises(SerializationError, match="Segment"):  # the body is encoded first
        encode_envelope(env)


def test_dataclass_kw_only_and_init_false() -> None:
    c = Codec()
    c.register_dataclass(Odd, 1)
    o = Odd("n", size=3)
    o.cache["x"] = 1
    back = c.unpackb(c.packb(o))
    assert isinstance(back, Odd) and (back.name, back.size, back.cache) == ("n", 3, {"x": 1})


def test_register_dataclass_auto_codes_and_decorator() -> None:
    c = Codec()

    @dataclasses.dataclass
    class A:
        v: int

    assert c.register_dataclass(A) is A
    c.register_dataclass(Point)
    c.register(Money, 66, lambda m: [m.cents, m.currency], lambda d: Money(*d))
    c.register_dataclass(Segment)
    assert c.registered() == {64: A, 65: Point, 66: Money, 67: Segment}


def test_register_rejects_duplicates_and_bad_codes() -> None:
    c = user_codec()

    @dataclasses.dataclass
    class Other:
        v: int

    with pytest.raises(ValueError, match="already registered"):
        c.register_dataclass(Other, 10)  # code taken
    with pytest.raises(ValueError, match="already registered"):
        c.register_dataclass(Point, 20)  # class taken
    for bad in (-1, 128, True, 1.0):
        with pytest.raises(ValueError, match=r"0\.\.127"):
            c.register_dataclass(Other, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="natively"):
        c.register(int, 30, int, int)
    with pytest.raises(TypeError):
        c.register_dataclass(Money, 31)


def test_module_register_acts_on_default_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = Codec()
    monkeypatch.setattr(wire, "DEFAULT_CODEC", fresh)
    wire.register_dataclass(Point, 5)
    wire.register(Money, 6, lambda m: [m.cents, m.currency], lambda d: Money(*d))
    assert fresh.registered() == {5: Point, 6: Money}


def test_exact_type_match_only() -> None:
    c = user_codec()

    class SubPoint(Point):
        pass

    with pytest.raises(SerializationError, match="SubPoint"):
        c.packb(SubPoint(1, 2))


def test_strict_mode_native_subclasses() -> None:
    c = Codec()
    c.register(Pair, 1, list, lambda d: Pair(*d))
    value = [Pair(1, (2, 3)), (4, 5), Color.RED, OrderedDict(a=1), Pair(Pair(1, 2), None)]
    back = c.unpackb(c.packb(value))
    assert back == [Pair(1, [2, 3]), [4, 5], 1, {"a": 1}, Pair(Pair(1, 2), None)]
    assert type(back[0]) is Pair and type(back[2]) is int and type(back[3]) is dict
    # without registration the same values degrade to plain types, like in non-strict mode
    plain = Codec().unpackb(Codec().packb(value))
    assert plain == [[1, [2, 3]], [4, 5], 1, {"a": 1}, [[1, 2], None]]


def test_encoder_reentering_the_codec() -> None:
    c = Codec()
    c.register(Money, 1, lambda m: c.packb([m.cents, m.currency]), lambda d: Money(*c.unpackb(d)))
    value = [Money(1, "EUR"), {"x": Money(2, "USD")}]
    assert c.unpackb(c.packb(value)) == value


def test_codec_is_thread_safe() -> None:
    c = user_codec()
    errors: list[str] = []

    def work(i: int) -> None:
        for j in range(2000):
            v = [i, j, Point(i, j), Money(j, str(i)) if j % 2 else "s" * (j % 50)]
            if c.unpackb(c.packb(v)) != v:
                errors.append(f"{i}/{j}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# -- encoding errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (object(), "object"),
        ({1, 2}, "set"),
        (Money(1, "EUR"), "Money"),
        (lambda: 1, "function"),
        ([[{"x": 1j}]], "complex"),
    ],
)
def test_unserialisable_values(value: Any, name: str) -> None:
    for env in (ask(args=[value]), ask(kwargs={"v": value}), ask(kind=REPLY, body=value)):
        with pytest.raises(SerializationError, match=name):
            encode_envelope(env)
    with pytest.raises(SerializationError, match=name):
        check_serializable(DEFAULT_CODEC, value)


def test_out_of_range_and_recursive_values() -> None:
    for v in (2**64, -(2**63) - 1):
        with pytest.raises(SerializationError, match="range"):
            encode_envelope(ask(body=v))
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(SerializationError):
        encode_envelope(ask(body=loop))
    with pytest.raises(SerializationError):
        encode_envelope(ask(body="\ud800"))  # lone surrogate is not UTF-8


def test_failing_encoder_and_decoder() -> None:
    c = Codec()
    c.register(Money, 1, lambda m: 1 / 0, lambda d: d)
    with pytest.raises(SerializationError, match="ZeroDivisionError"):
        c.packb(Money(1, "x"))
    c2 = Codec()
    c2.register(Money, 1, lambda m: [m.cents], lambda d: 1 / 0)
    with pytest.raises(SerializationError, match="does not decode"):
        check_serializable(c2, Money(1, "x"))
    with pytest.raises(ProtocolError, match="ZeroDivisionError"):
        decode_frame(encode_envelope(ask(body=Money(1, "x")), c2), c2)


def test_registered_nesting_is_bounded() -> None:
    @dataclasses.dataclass
    class Node:
        child: Any

    c = Codec()
    c.register_dataclass(Node, 1)
    ok: Any = None
    for _ in range(MAX_EXT_DEPTH):
        ok = Node(ok)
    assert c.unpackb(c.packb(ok)) == ok
    with pytest.raises(SerializationError, match="nested"):
        c.packb(Node(ok))
    # a hand-made frame nesting ext types more deeply is rejected by the decoder
    data = msgpack.packb(None)
    for _ in range(MAX_EXT_DEPTH + 5):
        data = msgpack.packb(msgpack.ExtType(1, msgpack.packb([msgpack.ExtType(1, data)])))
    frame = msgpack.packb(raw_envelope(body=msgpack.ExtType(1, data)))
    with pytest.raises(ProtocolError, match="nested"):
        decode_frame(frame, c)


@pytest.mark.parametrize(
    "override",
    [
        {"kind": 0},
        {"kind": 6},
        {"kind": True},
        {"corr": -1},
        {"corr": 2**64},
        {"corr": 1.0},
        {"sender": None},
        {"type_name": b"x"},
        {"key": 1},
        {"method": None},
        {"args": "x"},
        {"kwargs": []},
        {"kwargs": {1: 2}},
        {"deadline": -1.0},
        {"deadline": math.nan},
        {"deadline": math.inf},
        {"deadline": "soon"},
        {"deadline": True},
        {"hops": -1},
        {"hops": 2**32},
        {"trace": -5},
        {"trace": False},
        {"epoch": 2**64},
    ],
)
def test_invalid_fields(override: dict[str, Any]) -> None:
    with pytest.raises(SerializationError, match="invalid envelope"):
        encode_envelope(ask(**override))
    if override in ({"corr": 2**64}, {"epoch": 2**64}):
        return  # not representable in msgpack at all
    frame = msgpack.packb(raw_envelope(**override))
    with pytest.raises(ProtocolError, match="invalid envelope"):
        decode_frame(frame)


def test_message_too_large() -> None:
    env = ask(body=b"x" * 1000)
    size = len(encode_envelope(env))
    assert len(encode_envelope(env, max_size=size)) == size
    with pytest.raises(MessageTooLarge, match=str(size)):
        encode_envelope(env, max_size=size - 1)
    with pytest.raises(MessageTooLarge):
        encode_frame([env, env], max_size=size + 10)


# -- decoding errors -------------------------------------------------------------------------


def test_oversized_frame_rejected_before_parsing() -> None:
    frame = encode_envelope(ask(body=b"x" * 1000))
    assert decode_frame(frame, max_size=len(frame))
    with pytest.raises(ProtocolError, match="over the limit"):
        decode_frame(frame, max_size=len(frame) - 1)
    with pytest.raises(ProtocolError, match="over the limit"):
        decode_frame(frame * 3, max_size=len(frame) * 2)


@pytest.mark.parametrize("version", [0, 1, 2, 3, 5, 255, -1, "4", 4.0, True, None])
def test_wrong_version(version: Any) -> None:
    frame = msgpack.packb(raw_envelope(version=version))
    with pytest.raises(ProtocolError, match="version"):
        decode_frame(frame)
    # a bad envelope anywhere in a frame rejects the frame
    good = encode_envelope(ask())
    with pytest.raises(ProtocolError, match="version"):
        decode_frame(good + frame + good)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"\xc1", "malformed"),
        (b"\x90", "empty array"),
        (msgpack.packb({"a": 1}), "array"),
        (msgpack.packb([VERSION, 2, 3]), "4 to 15 elements"),
        (msgpack.packb([*raw_envelope(), [], None]), "4 to 15 elements"),
        (b"\x91" * 100_000 + b"\xc0", "malformed"),
        (b"\xdd\xff\xff\xff\xff", "malformed"),
        (b"\xdb\xff\xff\xff\xff" + b"a" * 10, "malformed"),
        (b"\xc7\x05\x01abc", "malformed"),
        (b"\xd6\xff\x00", "malformed"),  # truncated timestamp
    ],
)
def test_malformed_frames(data: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_frame(data)


def test_invalid_utf8_and_unhashable_keys() -> None:
    good = encode_envelope(ask(method="abc"))
    bad = good.replace(b"\xa3abc", b"\xa3\xff\xfe\xfd")
    with pytest.raises(ProtocolError, match="malformed"):
        decode_frame(bad)
    frame = msgpack.packb(raw_envelope(body=None))[:-1] + b"\x81\x91\x01\x02"  # {[1]: 2}
    with pytest.raises(ProtocolError, match="malformed"):
        decode_frame(frame)


def test_truncation_and_trailing_garbage() -> None:
    one = encode_envelope(ask(body={"x": [1, 2, 3]}))
    for i in range(len(one)):
        with pytest.raises(ProtocolError):
            decode_frame(one[:i])
    two = one + one
    for i in range(len(one) + 1, len(two)):
        with pytest.raises(ProtocolError, match=r"malformed|truncated"):
            decode_frame(two[:i])
    for tail in (b"\x00", b"\xc0", b"\x9e", one[:5]):
        with pytest.raises(ProtocolError):
            decode_frame(one + tail)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_only_protocol_error(data: bytes) -> None:
    decodes_or_protocol_error(data)
    decodes_or_protocol_error(data, user_codec())


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_after_valid_header(tail: bytes) -> None:
    decodes_or_protocol_error(b"\x9e\x01" + tail)
    decodes_or_protocol_error(encode_envelope(ask()) + b"\x9e\x01" + tail)


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 10_000), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.integers(1, 8)),
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just(0)),
)


def mutate(data: bytes, ops: list[tuple[str, int, Any]]) -> bytes:
    buf = bytearray(data)
    for op, pos, arg in ops:
        if not buf:
            buf += b"\x00"
        i = pos % len(buf)
        if op == "flip":
            buf[i] ^= 1 << arg
        elif op == "set":
            buf[i] = arg
        elif op == "insert":
            buf[i:i] = arg
        elif op == "delete":
            del buf[i : i + arg]
        else:
            del buf[i:]
    return bytes(buf)


@FUZZ
@given(st.lists(envelopes, min_size=1, max_size=3), st.lists(mutation, min_size=1, max_size=4))
def test_mutated_frames_only_protocol_error(envs: list[Envelope], ops: Any) -> None:
    decodes_or_protocol_error(mutate(encode_frame(envs), ops))


@FUZZ
@given(st.lists(mutation, min_size=1, max_size=4))
def test_mutated_frames_with_registered_types(ops: Any) -> None:
    c = FUZZ_CODEC
    decodes_or_protocol_error(mutate(FUZZ_USER_FRAME, ops), c)


# -- errors on the wire ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        ActorError("base"),
        UnknownActorType("Nope"),
        UnknownMethod("Counter.nope"),
        ActorTimeout("too slow"),
        SerializationError("set"),
        MessageTooLarge("big"),
        NodeUnavailable("tcp://x"),
        ProtocolError("bad"),
        Overloaded("mailbox full"),
    ],
)
def test_shoal_errors_keep_their_class(exc: ActorError) -> None:
    env = error_reply(ask(), exc, "Traceback...", sender="tcp://me")
    (back,) = decode_frame(encode_envelope(env))
    err = body_to_error(back.body)
    assert type(err) is type(exc) and str(err) == str(exc)


def test_remote_error_and_foreign_exceptions() -> None:
    try:
        raise MyErr("boom")
    except MyErr as e:
        body = error_to_body(e, "tb text")
    err = body_to_error(DEFAULT_CODEC.unpackb(DEFAULT_CODEC.packb(body)))
    assert type(err) is RemoteError
    assert err.type_name == f"{MyErr.__module__}.MyErr"
    assert (err.message, err.remote_traceback) == ("boom", "tb text")

    builtin = body_to_error(error_to_body(KeyError("k")))
    assert isinstance(builtin, RemoteError) and builtin.type_name == "KeyError"

    # a RemoteError passing through another actor keeps the original data
    again = body_to_error(error_to_body(err, "outer tb"))
    assert isinstance(again, RemoteError)
    assert (again.type_name, again.message, again.remote_traceback) == (
        err.type_name,
        "boom",
        "tb text",
    )
    # subclasses of shoal errors map to the nearest shoal class
    sub = body_to_error(error_to_body(MyMethodError("m")))
    assert type(sub) is UnknownMethod and str(sub) == "m"


def test_unprintable_exception() -> None:
    class Bad(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    body = error_to_body(Bad())
    assert isinstance(body_to_error(body), RemoteError) and "unprintable" in body[2]


def test_body_to_error_unknown_code_is_remote_error() -> None:
    err = body_to_error([99, "future.Error", "m", ""])
    assert isinstance(err, RemoteError) and err.type_name == "future.Error"


@pytest.mark.parametrize(
    "body",
    [None, 1, "x", [], [1, "a", "b"], [1, "a", "b", "c", "d"], ["1", "a", "b", "c"],
     [True, "a", "b", "c"], [1, None, "b", "c"], [1, "a", 2, "c"], [1, "a", "b", b"c"], {"a": 1}],
)  # fmt: skip
def test_body_to_error_malformed(body: Any) -> None:
    err = body_to_error(body)
    assert type(err) is ProtocolError and "malformed error body" in str(err)


@given(values)
def test_body_to_error_never_raises(body: Any) -> None:
    assert isinstance(body_to_error(body), ActorError)


def test_reply_helpers() -> None:
    req = ask(trace=123, corr=9, epoch=2)
    rep = reply_to(req, {"n": 1}, sender="tcp://b")
    assert (rep.kind, rep.corr, rep.trace, rep.sender, rep.body) == (
        REPLY,
        9,
        123,
        "tcp://b",
        {"n": 1},
    )
    assert (rep.type_name, rep.key, rep.epoch, rep.args, rep.kwargs) == (
        "Counter",
        "alice",
        2,
        [],
        {},
    )
    err = error_reply(req, UnknownMethod("x"), "tb", sender="tcp://b", epoch=7)
    assert (err.kind, err.corr, err.trace, err.epoch) == (ERROR, 9, 123, 7)
    assert decode_frame(encode_frame([rep, err])) == [rep, err]


def test_envelope_basics() -> None:
    env = ask()
    assert env == ask() and env != ask(corr=1) and env != "x"
    assert "ASK" in repr(env) and "Counter/alice.incr" in repr(env)
    assert "99" in repr(Envelope(99))
    with pytest.raises(AttributeError):
        env.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        hash(env)


# -- slow fuzz -------------------------------------------------------------------------------

FUZZ_CODEC = user_codec()
FUZZ_USER_FRAME = encode_frame(
    [
        ask(body=Segment(Point(1, 2), Point(3, 4), ["t"]), kwargs={"m": Money(5, "EUR")}),
        ask(kind=REPLY, body=[Point(-1, 2**40), {"x": Money(1, "")}]),
    ],
    FUZZ_CODEC,
)


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth < 3 and r < 0.15:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if depth < 3 and r < 0.25:
        return {rng.choice(["a", "bb", "c"]): _random_value(rng, depth + 1) for _ in range(3)}
    if depth < 3 and r < 0.32:
        return Point(rng.randrange(-1000, 1000), rng.randrange(2**40))
    if depth < 3 and r < 0.36:
        return Money(rng.randrange(10**6), "EUR")
    return rng.choice(
        [None, True, False, rng.randrange(-(2**63), 2**64), rng.random() * 1e6, "ab", b"\x00\xff"]
    )


def _valid_frames(rng: random.Random, n: int) -> list[bytes]:
    frames = []
    for _ in range(n):
        envs = [
            Envelope(
                rng.randrange(1, 6),
                rng.randrange(2**64),
                rng.choice(["", "tcp://10.0.0.1:5555"]),
                rng.choice(["Counter", "Cart", ""]),
                str(rng.randrange(1000)),
                rng.choice(["incr", "get", ""]),
                [_random_value(rng) for _ in range(rng.randrange(3))],
                {k: _random_value(rng) for k in rng.sample(["a", "by", "x"], rng.randrange(3))},
                rng.choice([0.0, 1_700_000_005.5]),
                rng.randrange(4),
                rng.randrange(2**64),
                rng.randrange(10),
                _random_value(rng),
            )
            for _ in range(rng.choice([1, 1, 1, 2, 3]))
        ]
        frames.append(encode_frame(envs, FUZZ_CODEC))
    return frames


@pytest.mark.slow
def test_fuzz_one_million_frames() -> None:
    rng = random.Random(20240601)
    pool = _valid_frames(rng, 400)
    pool_n = len(pool)
    headers = [b"\x9e\x01", b"\x9e", b"\x9e\x01\x01", b"\xdc\x00\x0e\x01", b""]
    codec = FUZZ_CODEC
    rand = rng.random
    randrange = rng.randrange
    randbytes = rng.randbytes
    total = 1_000_000
    ok = bad = 0
    started = time.perf_counter()
    for n in range(total):
        r = rand()
        if r < 0.2:  # pure random bytes of varied length
            data = randbytes(randrange(1, 8) if rand() < 0.5 else randrange(8, 200))
        elif r < 0.3:  # random tail after a plausible envelope header
            data = headers[randrange(5)] + randbytes(randrange(0, 80))
        else:  # mutations of valid frames
            buf = bytearray(pool[randrange(pool_n)])
            for _ in range(randrange(1, 4)):
                size = len(buf)
                if size == 0:
                    buf += randbytes(4)
                    continue
                op = randrange(8)
                i = randrange(size)
                if op <= 1:
                    buf[i] ^= 1 << randrange(8)
                elif op == 2:
                    buf[i] = randrange(256)
                elif op == 3:
                    buf[i:i] = randbytes(randrange(1, 6))
                elif op == 4:
                    del buf[i : i + randrange(1, 6)]
                elif op == 5:
                    del buf[i:]
                elif op == 6:
                    buf += pool[randrange(pool_n)][: randrange(1, 40)]
                else:
                    buf[i] = (0x00, 0x7F, 0x80, 0xC0, 0xCF, 0xD3, 0xDD, 0xFF)[randrange(8)]
            data = bytes(buf)
        try:
            decode_frame(data, codec)
        except ProtocolError:
            bad += 1
        except Exception as exc:  # pragma: no cover - the failure being tested for
            raise AssertionError(f"frame #{n} {data.hex()} raised {exc!r}") from exc
        else:
            ok += 1
    elapsed = time.perf_counter() - started
    assert ok + bad == total
    assert ok > 1000 and bad > 500_000  # both paths really exercised
    print(
        f"fuzzed {total} frames: {ok} decoded, {bad} ProtocolError "
        f"in {elapsed:.1f}s ({elapsed / total * 1e6:.1f} us/frame)"
    )


def test_encode_reply_matches_encode_envelope() -> None:
    from runtime.wire import REPLY, Envelope, encode_envelope, encode_reply

    for body in (None, 3, "x", [1, {"a": b"b"}]):
        assert encode_reply(7, "tcp://n:1", body) == encode_envelope(
            Envelope(REPLY, 7, "tcp://n:1", body=body)
        )
    with pytest.raises(MessageTooLarge):
        encode_reply(1, "", b"x" * 100, max_size=50)
    with pytest.raises(SerializationError):
        encode_reply(1, "", object())


def test_encode_request_matches_encode_envelope() -> None:
    from runtime.wire import ASK, TELL, Envelope, encode_envelope, encode_request

    shapes = itertools.product(
        (ASK, TELL), ("", "tcp://n:1"), ("", "T"), ([], [1, "a"]), ({}, {"x": [2]}),
        (0.0, 9.5), (0, 1), (0, 77),
    )  # fmt: skip
    for kind, sender, name, args, kwargs, deadline, hops, trace in shapes:
        fast = encode_request(
            kind, 5, sender, name, "k", "m", tuple(args), kwargs, deadline, hops, trace
        )
        slow = encode_envelope(
            Envelope(kind, 5, sender, name, "k", "m", args, kwargs, deadline, hops, trace)
        )
        assert fast == slow
    with pytest.raises(SerializationError):
        encode_request(ASK, 1, "", "T", "k", "m", (object(),), {}, 0.0, 0, 0)
    with pytest.raises(MessageTooLarge):
        encode_request(TELL, 0, "", "T", "k", "m", (b"x" * 100,), {}, 0.0, 0, 0, max_size=50)


# -- attached replies ---------------------------------------------------------------------------


def test_attached_reply_round_trip() -> None:
    from runtime.wire import decode_attached, encode_attached_reply

    attachment = memoryview(bytes(range(256)) * 40)
    for result in ([], [7, 10_240, 0, ["<f8", [2, 3]]], [Point(1, 2)]):
        frame = encode_attached_reply(9, result, attachment.nbytes, user_codec())
        fields = decode_attached(frame, attachment, user_codec())
        assert fields[F_KIND] == REPLY and fields[F_CORR] == 9 and len(fields) == 15
        *head, last = fields[wire.F_BODY]
        assert head == result and last is attachment  # appended itself: nothing copied
    # the frame alone is an ordinary reply of the result without its attachment
    assert encode_attached_reply(3, [1, 2], 5) == msgpack.packb([VERSION, REPLY, 3, [1, 2]])
    (plain,) = decode_frame(encode_attached_reply(3, [1, 2], 5))
    assert (plain.kind, plain.corr, plain.body) == (REPLY, 3, [1, 2])


def test_attached_reply_encoding_errors() -> None:
    from runtime.wire import encode_attached_reply

    with pytest.raises(SerializationError, match="list"):
        encode_attached_reply(1, (1, 2), 0)  # type: ignore[arg-type]
    with pytest.raises(SerializationError):
        encode_attached_reply(1, [object()], 0)
    with pytest.raises(MessageTooLarge, match="over the limit"):
        encode_attached_reply(1, [1], 100, max_size=100)  # frame and attachment together
    assert encode_attached_reply(1, [1], 100 - 7, max_size=100)  # a 7-byte frame: fits


@pytest.mark.parametrize(
    ("frame", "attachment", "match"),
    [
        (b"", memoryview(b"x"), "empty frame"),
        (b"\xc1", memoryview(b"x"), "malformed"),
        (msgpack.packb([VERSION, REPLY, 1, [1]])[:-1], memoryview(b"x"), "malformed|truncated"),
        (msgpack.packb([VERSION - 1, REPLY, 1, [1]]), memoryview(b"x"), "version"),
        (msgpack.packb([VERSION, REPLY, 1, [1]]) * 2, memoryview(b"x"), "one envelope"),
        (msgpack.packb([VERSION, ASK, 1, None, "T", "k", "m"]), memoryview(b"x"), "REPLY"),
        (msgpack.packb([VERSION, ERROR, 1, [9, "E", "m", ""]]), memoryview(b"x"), "REPLY"),
        (msgpack.packb([VERSION, REPLY, 1, {"a": 1}]), memoryview(b"x"), "array"),
        (msgpack.packb([VERSION, REPLY, 1, b"bin"]), memoryview(b"x"), "array"),
        (msgpack.packb([VERSION, REPLY, 1, [1]]), b"x", "memoryview"),
        (msgpack.packb([VERSION, REPLY, 1, [1]]), memoryview(b"abcd").cast("i"), "memoryview"),
        (msgpack.packb([VERSION, REPLY, 1, [1]]), memoryview(b"ab" * 6).cast("B", [3, 4]), "1-D"),
        (b"\xc1" * 10, memoryview(bytes(100)), "over the limit"),  # sizes before parsing
        (1234, memoryview(b"x"), "bytes"),
    ],
)
def test_malformed_attached_messages_are_protocol_errors(
    frame: Any, attachment: Any, match: str
) -> None:
    with pytest.raises(ProtocolError, match=match):
        wire.decode_attached(frame, attachment, max_size=100)


@FUZZ
@given(st.binary(max_size=200), st.binary(max_size=50))
def test_random_attached_messages_only_protocol_error(frame: bytes, attachment: bytes) -> None:
    try:
        fields = wire.decode_attached(frame, memoryview(attachment))
    except ProtocolError:
        return
    assert fields[F_KIND] == REPLY and fields[wire.F_BODY][-1] == attachment


def test_waits_round_trip_and_an_ask_without_them_leaves_them_out() -> None:
    waits = ["Ping", "a", 7, -1, "Pong", "b\nx", 2**64 - 1, 0, "Ping", "c", 0, 0]
    env = Envelope(ASK, 5, type_name="T", key="k", method="m", trace=3, waits=waits)
    (back,) = decode_frame(encode_envelope(env))
    assert back.waits == waits and same(back, env)
    (fields,) = decode_fields(encode_envelope(env))
    assert fields[F_WAITS] == waits
    plain = msgpack.unpackb(encode_envelope(Envelope(ASK, 5, type_name="T", trace=3)))
    assert len(plain) == 10  # ends at its trace: no waits on the wire
    request = encode_request(ASK, 5, "", "T", "k", "m", [], {}, 0.0, 0, 3, waits=waits)
    assert request == encode_envelope(env)


@pytest.mark.parametrize(
    ("waits", "match"),
    [
        ({"a": 1}, "waits must be an array"),
        (["T", "k", 1], "at most 32 entries of 4 items, got 3 items"),
        (["T", "k", 1, -1] * 33, "at most 32 entries of 4 items, got 132 items"),
        ([1, "k", 1, -1], "entry 0: type_name and key must be str"),
        (["T", "k", -1, -1], "entry 0: chain must be a u64 int"),
        (["T", "k", True, -1], "entry 0: chain must be a u64 int"),
        (["T", "k", 1, 0], r"entry 0: parent must be an int in -1\.\.-1, got 0"),
        (["T", "k", 1, -1, "U", "j", 2, 1], r"entry 1: parent must be an int in -1\.\.0, got 1"),
        (["T", "k", 1, -2], r"entry 0: parent must be an int in -1\.\.-1, got -2"),
    ],
)
def test_malformed_waits_are_refused_both_ways(waits: Any, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_frame(msgpack.packb([*raw_envelope(), waits]))
    with pytest.raises(SerializationError, match=match):
        encode_envelope(Envelope(ASK, 1, type_name="T", waits=waits))


def test_a_deadlock_crosses_the_wire_as_itself() -> None:
    body = error_to_body(Deadlock("call-chain deadlock: A/a -> B/b -> A/a"))
    assert body[0] == ERR_DEADLOCK
    back = body_to_error(body)
    assert type(back) is Deadlock and str(back) == "call-chain deadlock: A/a -> B/b -> A/a"
