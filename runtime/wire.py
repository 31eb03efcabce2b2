"""The shoal wire protocol: envelopes, frames and the msgpack codec (sans-io).

This module does no I/O: it turns :class:`Envelope` objects into bytes and back. Transports
(ZeroMQ, in-process queues, ...) only move the bytes.

Envelope (protocol version 4)
-----------------------------
An envelope is ONE msgpack array of 4 to 15 elements, in this order::

    idx  field      msgpack type     default  meaning
    0    version    int                       always VERSION (= 4); checked first
    1    kind       int                       1 ASK, 2 TELL, 3 REPLY, 4 ERROR, 5 CONTROL
    2    corr       int  u64                  correlation id; REPLY/ERROR echo it. A TELL has
                                              0, or an id asking for an acknowledgement: a
                                              REPLY once the actor's mailbox has room (the
                                              pushback of paced tells, runtime.calls)
    3    body       any                       REPLY: the result; ERROR: error body (below);
                                              CONTROL: any; nil for ASK and TELL
    4    type_name  str              ""       actor type
    5    key        str              ""       actor key
    6    method     str              ""       method name
    7    args       array            []       positional arguments
    8    deadline   float (or int)   0.0      absolute unix wall-clock seconds, 0.0 = none;
                                              kept across hops
    9    trace      int  u64         0        call-chain / trace id
    10   kwargs     map str -> any   {}       keyword arguments
    11   hops       int  u32         0        how many times the envelope was forwarded
    12   sender     str              ""       sender node address
    13   epoch      int  u64         0        activation epoch (fencing token), 0 = unknown
    14   waits      array            []       what waits on an ASK: flat entries
                                              ``type_name (str), key (str), chain (u64),
                                              parent (int)``, at most MAX_WAITS of them;
                                              ``parent`` is the index of the entry it waits
                                              on, -1 for the envelope's target, else < its
                                              own index (see ``runtime.chains``)

Trailing elements that hold their default may be left out, and encoders leave out every one
they can: a REPLY is ``[4, 3, corr, result]``, an ASK without keyword arguments ends at
``trace``. The order puts what each kind needs first. Integers are never bools (``true`` in
an int field is rejected). ``deadline`` must be finite and >= 0; an int is accepted and becomes
a float. The runtime leaves ``sender`` empty on requests and replies (the connection is the
route back); CONTROL messages carry it.

Frame
-----
A frame is the plain concatenation of one or more encoded envelopes, so a transport may
coalesce with ``b"".join(chunks)``. There is no frame header. A frame must hold at least one
envelope, every envelope must be complete and valid, and nothing may follow the last one.
Frames above ``max_size`` bytes (default :data:`DEFAULT_MAX_FRAME`, 64 MiB) are rejected before
parsing. :func:`decode_frame` raises :class:`~actors.errors.ProtocolError` and nothing else for
any malformed input (the whole frame is rejected).

Attached reply
--------------
A reply may carry a large binary value beside its frame instead of inside it, so that it is
never copied into (or out of) msgpack: an *attached message* is two transport frames, the
frame of exactly one REPLY envelope whose result is an array, and the *attachment*, raw bytes,
which on arrival become that array's last element (a ``memoryview``): ``[4, 3, corr, [a, b]]``
with attachment ``X`` decodes as ``[4, 3, corr, [a, b, X]]``. It is never coalesced with other
envelopes. The frame and the attachment together must fit ``max_size`` (checked before
parsing); anything else (several envelopes, another kind, a result that is not an array, a
frame or attachment missing) is a ProtocolError. :func:`encode_attached_reply` and
:func:`decode_attached` are the two sides. (Version 3 added it; the envelopes are version 2's.
Version 4 added ``waits``; a peer of another version is refused, as always.)

Values
------
Values are plain msgpack (nil, bool, int in [-2**63, 2**64), float64, str, bin, array, map with
any hashable keys, msgpack timestamps) plus registered types. Tuples (and other sequences that
msgpack packs natively) come back as lists; subclasses of native types (IntEnum, str
subclasses, OrderedDict, ...) come back as the base type unless registered. A registered type
is sent as msgpack ext type ``code`` (0..127) whose payload is the msgpack encoding of what the
type's ``encode`` returned, so registered types nest (at most :data:`MAX_EXT_DEPTH` levels).
Decoding never runs code other than the ``decode`` functions the user registered; unknown ext
codes are a ProtocolError. Pickle is never used. Passing ``msgpack.ExtType`` objects yourself
is not supported (the peer will reject the frame).

Error body (kind ERROR)
-----------------------
``[code, type_name, message, traceback]``: ``code`` is one of the ``ERR_*`` ints below and picks
the shoal error class that the caller raises; ``type_name`` is the qualified name of the
exception raised remotely; ``traceback`` is the remote traceback text (may be ""). See
:func:`error_to_body` and :func:`body_to_error`.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from enum import IntEnum
from typing import Any, Final, TypeVar

import msgpack

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

__all__ = [
    "ASK",
    "CONTROL",
    "DEFAULT_CODEC",
    "DEFAULT_MAX_FRAME",
    "ERROR",
    "ERR_ACTOR",
    "ERR_DEADLOCK",
    "ERR_NODE_UNAVAILABLE",
    "ERR_OVERLOADED",
    "ERR_PROTOCOL",
    "ERR_REDIRECT",
    "ERR_REMOTE",
    "ERR_SERIALIZATION",
    "ERR_TIMEOUT",
    "ERR_TOO_LARGE",
    "ERR_UNKNOWN_METHOD",
    "ERR_UNKNOWN_TYPE",
    "F_ARGS",
    "F_BODY",
    "F_CORR",
    "F_DEADLINE",
    "F_EPOCH",
    "F_HOPS",
    "F_KEY",
    "F_KIND",
    "F_KWARGS",
    "F_METHOD",
    "F_SENDER",
    "F_TRACE",
    "F_TYPE",
    "F_WAITS",
    "MAX_EXT_DEPTH",
    "MAX_WAITS",
    "REPLY",
    "TELL",
    "VERSION",
    "Codec",
    "Envelope",
    "Kind",
    "Redirect",
    "body_to_error",
    "check_serializable",
    "decode_attached",
    "decode_fields",
    "decode_frame",
    "encode_attached_reply",
    "encode_envelope",
    "encode_frame",
    "encode_reply",
    "encode_request",
    "envelope_of",
    "error_reply",
    "error_to_body",
    "register",
    "register_dataclass",
    "reply_to",
]

T = TypeVar("T")

VERSION: Final = 4
"""Protocol version; the first element of every encoded envelope."""

DEFAULT_MAX_FRAME: Final = 64 * 1024 * 1024
"""Default bound, in bytes, on an encoded envelope and on a frame."""

MAX_EXT_DEPTH: Final = 64
"""How deeply registered types may nest inside each other."""

ASK: Final = 1
TELL: Final = 2
REPLY: Final = 3
ERROR: Final = 4
CONTROL: Final = 5

_U64: Final = (1 << 64) - 1
_U32: Final = (1 << 32) - 1
_INF: Final = float("inf")
_N_FIELDS: Final = 15
_MIN_FIELDS: Final = 4
#: Indexes into an envelope array from :func:`decode_fields` (0 is the version).
F_KIND: Final = 1
F_CORR: Final = 2
F_BODY: Final = 3
F_TYPE: Final = 4
F_KEY: Final = 5
F_METHOD: Final = 6
F_ARGS: Final = 7
F_DEADLINE: Final = 8
F_TRACE: Final = 9
F_KWARGS: Final = 10
F_HOPS: Final = 11
F_SENDER: Final = 12
F_EPOCH: Final = 13
F_WAITS: Final = 14

MAX_WAITS: Final = 32
"""Most entries in an envelope's ``waits``."""


class Kind(IntEnum):
    """Envelope kinds (the same values as the module constants ``ASK`` ... ``CONTROL``)."""

    ASK = 1
    TELL = 2
    REPLY = 3
    ERROR = 4
    CONTROL = 5


def _qualname(tp: type) -> str:
    mod = getattr(tp, "__module__", None)
    name = getattr(tp, "__qualname__", None) or getattr(tp, "__name__", "?")
    if not mod or mod == "builtins":
        return str(name)
    return f"{mod}.{name}"


# --------------------------------------------------------------------------------------------
# Codec
# --------------------------------------------------------------------------------------------

# Types msgpack packs by exact type; registering them would have no effect.
_NATIVE_EXACT: Final[frozenset[type]] = frozenset(
    {int, float, str, bytes, bytearray, memoryview, bool, type(None), list, dict}
)
# Base types whose subclasses msgpack would pack natively (non-strict mode).
_NATIVE_BASES: Final = (int, float, str, bytes, bytearray, list, tuple, dict)


def _downcast(obj: Any) -> Any:
    """Strict mode: a subclass of a native type (or a tuple) becomes the plain base type."""
    if isinstance(obj, bool):  # pragma: no cover - bool cannot be subclassed
        return bool(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, bytes | bytearray):
        return bytes(obj)
    if isinstance(obj, list | tuple):
        return list(obj)
    if isinstance(obj, dict):
        return dict(obj)
    return _MISSING


_MISSING: Final = object()


class Codec:
    """msgpack plus a registry of user types, sent as msgpack ext types.

    Both ends of a connection must register the same classes under the same codes.
    A class is matched by its exact type (instances of unregistered subclasses are not
    encoded with the parent's encoder). ``packb``/``unpackb`` are thread-safe.
    """

    __slots__ = ("_by_code", "_by_type", "_dec_hooks", "_enc_hooks", "_strict", "_tls")

    def __init__(self) -> None:
        self._by_code: dict[int, tuple[type, Callable[[Any], Any]]] = {}
        self._by_type: dict[type, tuple[int, Callable[[Any], Any]]] = {}
        # strict_types is switched on once a subclass of a native type (e.g. a NamedTuple or an
        # IntEnum) is registered, so that msgpack hands such objects to our default hook.
        self._strict = False
        self._tls = threading.local()
        self._enc_hooks: list[Callable[[Any], Any]] = [
            self._make_enc_hook(d) for d in range(MAX_EXT_DEPTH + 1)
        ]
        self._dec_hooks: list[Callable[[int, bytes], Any]] = [
            self._make_dec_hook(d) for d in range(MAX_EXT_DEPTH + 1)
        ]

    # -- registration ---------------------------------------------------------------------

    def register(
        self,
        cls: type[T],
        code: int,
        encode: Callable[[T], Any],
        decode: Callable[[Any], T],
    ) -> type[T]:
        """Register ``cls`` as ext type ``code`` (0..127); returns ``cls``.

        ``encode(obj)`` must return msgpack-able data (which may contain registered types);
        ``decode(data)`` rebuilds the object from that data (tuples in it arrive as lists).
        Raises ValueError if the code or the class is already registered, the code is out of
        range, or ``cls`` is a type that msgpack encodes natively.
        """
        if not isinstance(cls, type):
            raise TypeError(f"register() needs a class, got {cls!r}")
        if type(code) is not int or not 0 <= code <= 127:
            raise ValueError(f"ext code must be an int in 0..127, got {code!r}")
        if cls in _NATIVE_EXACT:
            raise ValueError(f"{_qualname(cls)} is encoded natively by msgpack")
        if code in self._by_code:
            other = self._by_code[code][0]
            raise ValueError(f"ext code {code} is already registered for {_qualname(other)}")
        if cls in self._by_type:
            raise ValueError(
                f"{_qualname(cls)} is already registered with code {self._by_type[cls][0]}"
            )
        if not callable(encode) or not callable(decode):
            raise TypeError("encode and decode must be callable")
        self._by_code[code] = (cls, decode)
        self._by_type[cls] = (code, encode)
        if not self._strict and issubclass(cls, _NATIVE_BASES):
            self._strict = True
            self._tls = threading.local()  # drop cached packers built for non-strict mode
        return cls

    def register_dataclass(self, cls: type[T], code: int | None = None) -> type[T]:
        """Register a dataclass; its fields are sent positionally, in definition order.

        Returns ``cls``, so it also works as a bare decorator. With ``code=None`` the lowest
        free code in 64..127 is taken: that is only stable if every node registers the same
        types in the same order, so pass explicit codes for anything that crosses nodes.
        Decoding calls the class's ``__init__`` with the ``init=True`` fields (so
        ``__post_init__`` runs) and then sets the ``init=False`` fields directly.
        """
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise TypeError(f"{cls!r} is not a dataclass type")
        if code is None:
            code = next((c for c in range(64, 128) if c not in self._by_code), None)
            if code is None:
                raise ValueError("no free ext code left in 64..127; pass an explicit code")
        fields = dataclasses.fields(cls)
        names = tuple(f.name for f in fields)
        n = len(names)
        positional = all(f.init and not f.kw_only for f in fields)
        init_mask = tuple(f.init for f in fields)
        target: Any = cls

        def encode(obj: Any) -> list[Any]:
            return [getattr(obj, name) for name in names]

        def decode(data: Any) -> Any:
            if type(data) is not list or len(data) != n:
                raise ValueError(f"{_qualname(target)}: expected a list of {n} field values")
            if positional:
                return target(*data)
            kw = {name: v for name, v, i in zip(names, data, init_mask, strict=True) if i}
            obj = target(**kw)
            for name, v, i in zip(names, data, init_mask, strict=True):
                if not i:
                    object.__setattr__(obj, name, v)
            return obj

        return self.register(cls, code, encode, decode)

    def registered(self) -> dict[int, type]:
        """The registered classes by ext code (a copy)."""
        return {code: entry[0] for code, entry in self._by_code.items()}

    # -- hooks ----------------------------------------------------------------------------

    def _make_enc_hook(self, depth: int) -> Callable[[Any], Any]:
        by_type = self._by_type

        def default(obj: Any) -> Any:
            entry = by_type.get(type(obj))
            if entry is None:
                if type(obj) is int:  # msgpack hands over ints it cannot represent
                    raise SerializationError(
                        f"integer {obj} is out of msgpack range [-2**63, 2**64)"
                    )
                if self._strict:
                    plain = _downcast(obj)
                    if plain is not _MISSING:
                        return plain
                raise SerializationError(
                    f"cannot serialize object of type {_qualname(type(obj))} "
                    "(not msgpack-native and not registered)"
                )
            if depth >= MAX_EXT_DEPTH:
                raise SerializationError(
                    f"registered types nested more than {MAX_EXT_DEPTH} levels deep"
                )
            code, encode = entry
            try:
                data = encode(obj)
            except SerializationError:
                raise
            except Exception as exc:
                raise SerializationError(
                    f"encoder for {_qualname(type(obj))} failed: {exc!r}"
                ) from exc
            payload = msgpack.packb(
                data,
                default=self._enc_hooks[depth + 1],
                use_bin_type=True,
                strict_types=self._strict,
            )
            return msgpack.ExtType(code, payload)

        return default

    def _make_dec_hook(self, depth: int) -> Callable[[int, bytes], Any]:
        by_code = self._by_code

        def ext_hook(code: int, data: bytes) -> Any:
            entry = by_code.get(code)
            if entry is None:
                raise ProtocolError(f"unknown ext type code {code}")
            if depth >= MAX_EXT_DEPTH:
                raise ProtocolError(f"registered types nested more than {MAX_EXT_DEPTH} deep")
            inner = msgpack.unpackb(
                data,
                ext_hook=self._dec_hooks[depth + 1],
                use_list=True,
                raw=False,
                strict_map_key=False,
            )
            return entry[1](inner)

        return ext_hook

    def _new_packer(self) -> Any:
        return msgpack.Packer(
            default=self._enc_hooks[0],
            use_bin_type=True,
            strict_types=self._strict,
            autoreset=True,
        )

    # -- packing --------------------------------------------------------------------------

    def packb(self, obj: Any) -> bytes:
        """Encode ``obj``; raises SerializationError naming the type that cannot be encoded."""
        tls = self._tls
        packer = getattr(tls, "packer", None)
        if packer is None:  # first use on this thread, or re-entered from an encode hook
            packer = self._new_packer()
        else:
            tls.packer = None
        try:
            data: bytes = packer.pack(obj)
        except SerializationError:
            raise
        except OverflowError as exc:
            raise SerializationError(
                f"integer out of msgpack range [-2**63, 2**64): {exc}"
            ) from exc
        except Exception as exc:  # RecursionError, ValueError (too deep/large), TypeError, ...
            raise SerializationError(f"cannot serialize value: {exc!r}") from exc
        finally:
            tls.packer = packer
        return data

    def unpackb(self, data: bytes) -> Any:
        """Decode exactly one msgpack object. Raises ProtocolError for any malformed input."""
        try:
            return msgpack.unpackb(
                data,
                ext_hook=self._dec_hooks[0],
                use_list=True,
                raw=False,
                strict_map_key=False,
            )
        except ProtocolError:
            raise
        except Exception as exc:
            raise ProtocolError(f"malformed msgpack data: {_describe(exc)}") from exc

    def check_serializable(self, obj: Any) -> None:
        """Raise SerializationError unless ``obj`` survives an encode/decode round trip."""
        data = self.packb(obj)
        try:
            self.unpackb(data)
        except ProtocolError as exc:
            raise SerializationError(f"value does not decode again: {exc}") from exc


def _describe(exc: BaseException) -> str:
    detail = _safe_str(exc)
    text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


DEFAULT_CODEC: Final = Codec()
"""The process-wide codec (``actors.register`` acts on it)."""


def register(
    cls: type[T],
    code: int,
    encode: Callable[[T], Any],
    decode: Callable[[Any], T],
) -> type[T]:
    """:meth:`Codec.register` on :data:`DEFAULT_CODEC`."""
    return DEFAULT_CODEC.register(cls, code, encode, decode)


def register_dataclass(cls: type[T], code: int | None = None) -> type[T]:
    """:meth:`Codec.register_dataclass` on :data:`DEFAULT_CODEC`."""
    return DEFAULT_CODEC.register_dataclass(cls, code)


def check_serializable(codec: Codec, obj: Any) -> None:
    """Raise SerializationError unless ``obj`` can cross the wire with ``codec`` and back."""
    codec.check_serializable(obj)


# --------------------------------------------------------------------------------------------
# Envelope
# --------------------------------------------------------------------------------------------


class Envelope:
    """One message. Mutable, slotted; ``kind`` is a plain int (see :class:`Kind`)."""

    __slots__ = (
        "args",
        "body",
        "corr",
        "deadline",
        "epoch",
        "hops",
        "key",
        "kind",
        "kwargs",
        "method",
        "sender",
        "trace",
        "type_name",
        "waits",
    )

    def __init__(
        self,
        kind: int,
        corr: int = 0,
        sender: str = "",
        type_name: str = "",
        key: str = "",
        method: str = "",
        args: list[Any] | tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        deadline: float = 0.0,
        hops: int = 0,
        trace: int = 0,
        epoch: int = 0,
        body: Any = None,
        waits: list[Any] | None = None,
    ) -> None:
        self.kind = kind
        self.corr = corr
        self.sender = sender
        self.type_name = type_name
        self.key = key
        self.method = method
        # A tuple (what a caller's *args is) is encoded as an array; decoding gives lists.
        self.args: list[Any] | tuple[Any, ...] = [] if args is None else args
        self.kwargs: dict[str, Any] = {} if kwargs is None else kwargs
        self.deadline = deadline
        self.hops = hops
        self.trace = trace
        self.epoch = epoch
        self.body = body
        #: what waits on an ASK (``runtime.chains``): flat entries, [] for none
        self.waits: list[Any] = [] if waits is None else waits

    def _fields(self) -> tuple[Any, ...]:
        return (
            self.kind,
            self.corr,
            self.sender,
            self.type_name,
            self.key,
            self.method,
            self.args,
            self.kwargs,
            self.deadline,
            self.hops,
            self.trace,
            self.epoch,
            self.body,
            self.waits,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Envelope):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        try:
            kind: object = Kind(self.kind).name
        except ValueError:
            kind = self.kind
        return (
            f"Envelope({kind}, corr={self.corr}, sender={self.sender!r}, "
            f"target={self.type_name}/{self.key}.{self.method}, args={self.args!r}, "
            f"kwargs={self.kwargs!r}, deadline={self.deadline}, hops={self.hops}, "
            f"trace={self.trace:#x}, epoch={self.epoch}, body={self.body!r}, "
            f"waits={self.waits!r})"
        )


def _field_error(
    kind: Any,
    corr: Any,
    sender: Any,
    type_name: Any,
    key: Any,
    method: Any,
    args: Any,
    kwargs: Any,
    deadline: Any,
    hops: Any,
    trace: Any,
    epoch: Any,
    waits: Any = (),
) -> str | None:
    """Return a description of the first invalid header field, or None if all are valid."""
    if type(kind) is not int or not 1 <= kind <= 5:
        return f"kind must be an int in 1..5, got {kind!r}"
    if type(corr) is not int or not 0 <= corr <= _U64:
        return f"corr must be a u64 int, got {corr!r}"
    if type(sender) is not str:
        return f"sender must be str, got {type(sender).__name__}"
    if type(type_name) is not str:
        return f"type_name must be str, got {type(type_name).__name__}"
    if type(key) is not str:
        return f"key must be str, got {type(key).__name__}"
    if type(method) is not str:
        return f"method must be str, got {type(method).__name__}"
    if type(args) is not list:
        return f"args must be an array, got {type(args).__name__}"
    if type(kwargs) is not dict:
        return f"kwargs must be a map, got {type(kwargs).__name__}"
    if kwargs:
        for k in kwargs:
            if type(k) is not str:
                return f"kwargs keys must be str, got {type(k).__name__}"
    td = type(deadline)
    if (td is not float and td is not int) or not 0 <= deadline < _INF:
        return f"deadline must be a finite number >= 0, got {deadline!r}"
    if type(hops) is not int or not 0 <= hops <= _U32:
        return f"hops must be a u32 int, got {hops!r}"
    if type(trace) is not int or not 0 <= trace <= _U64:
        return f"trace must be a u64 int, got {trace!r}"
    if type(epoch) is not int or not 0 <= epoch <= _U64:
        return f"epoch must be a u64 int, got {epoch!r}"
    if waits != ():
        return _waits_error(waits)
    return None


def _waits_error(waits: Any) -> str | None:
    """A description of what is wrong with a ``waits`` field, or None."""
    if type(waits) is not list:
        return f"waits must be an array, got {type(waits).__name__}"
    n = len(waits)
    if n % 4 or n > 4 * MAX_WAITS:
        return f"waits must hold at most {MAX_WAITS} entries of 4 items, got {n} items"
    for i in range(0, n, 4):
        type_name, key, chain, parent = waits[i : i + 4]
        if type(type_name) is not str or type(key) is not str:
            return f"waits entry {i // 4}: type_name and key must be str"
        if type(chain) is not int or not 0 <= chain <= _U64:
            return f"waits entry {i // 4}: chain must be a u64 int, got {chain!r}"
        if type(parent) is not int or not -1 <= parent < i // 4:
            return (
                f"waits entry {i // 4}: parent must be an int in -1..{i // 4 - 1}, got {parent!r}"
            )
    return None


def encode_envelope(
    env: Envelope, codec: Codec = DEFAULT_CODEC, max_size: int = DEFAULT_MAX_FRAME
) -> bytes:
    """Encode one envelope (which is also a valid one-envelope frame).

    Raises SerializationError if a header field is invalid or a value cannot be encoded, and
    MessageTooLarge if the result is longer than ``max_size`` bytes. ``args`` may be a tuple.
    """
    kind = env.kind
    corr = env.corr
    sender = env.sender
    type_name = env.type_name
    key = env.key
    method = env.method
    args: Any = env.args
    kwargs = env.kwargs
    deadline = env.deadline
    hops = env.hops
    trace = env.trace
    epoch = env.epoch
    waits = env.waits
    if type(args) is tuple:
        args = list(args)
    # Fast path: one boolean chain; the slow path pinpoints the offending field.
    if not (
        type(kind) is int
        and 1 <= kind <= 5
        and type(corr) is int
        and 0 <= corr <= 0xFFFFFFFFFFFFFFFF
        and type(sender) is str
        and type(type_name) is str
        and type(key) is str
        and type(method) is str
        and type(args) is list
        and type(kwargs) is dict
        and type(deadline) is float
        and 0.0 <= deadline < _INF
        and type(hops) is int
        and 0 <= hops <= 0xFFFFFFFF
        and type(trace) is int
        and 0 <= trace <= 0xFFFFFFFFFFFFFFFF
        and type(epoch) is int
        and 0 <= epoch <= 0xFFFFFFFFFFFFFFFF
        and type(waits) is list
    ):
        err = _field_error(
            kind, corr, sender, type_name, key, method, args, kwargs, deadline, hops, trace, epoch,
            waits,
        )  # fmt: skip
        if err is not None:
            raise SerializationError(f"invalid envelope: {err}")
    else:
        if kwargs:
            for k in kwargs:
                if type(k) is not str:
                    raise SerializationError(
                        f"invalid envelope: kwargs keys must be str, got {type(k).__name__}"
                    )
        if waits:
            err = _waits_error(waits)
            if err is not None:
                raise SerializationError(f"invalid envelope: {err}")
    data = codec.packb(
        _trimmed(kind, corr, env.body, type_name, key, method, args, deadline, trace, kwargs,
                 hops, sender, epoch, waits)
    )  # fmt: skip
    if len(data) > max_size:
        raise MessageTooLarge(
            f"encoded {Kind(kind).name} to {type_name}/{key}.{method} is "
            f"{len(data)} bytes, over the limit of {max_size}"
        )
    return data


def _trimmed(
    kind: int,
    corr: int,
    body: Any,
    type_name: str,
    key: str,
    method: str,
    args: list[Any],
    deadline: float,
    trace: int,
    kwargs: dict[str, Any],
    hops: int,
    sender: str,
    epoch: int,
    waits: list[Any],
) -> list[Any]:
    """The wire array of validated fields, without the trailing ones that hold their default
    (every default is falsy, and a falsy value of a validated field is its default)."""
    fields = [VERSION, kind, corr, body, type_name, key, method, args, deadline, trace, kwargs,
              hops, sender, epoch, waits]  # fmt: skip
    n = _N_FIELDS
    while n > _MIN_FIELDS and not fields[n - 1]:
        n -= 1
    return fields if n == _N_FIELDS else fields[:n]


def encode_request(
    kind: int,
    corr: int,
    sender: str,
    type_name: str,
    key: str,
    method: str,
    args: list[Any] | tuple[Any, ...],
    kwargs: dict[str, Any],
    deadline: float,
    hops: int,
    trace: int,
    codec: Codec = DEFAULT_CODEC,
    max_size: int = DEFAULT_MAX_FRAME,
    waits: list[Any] | None = None,
) -> bytes:
    """Encode an ASK or TELL built by the runtime itself (the hot send path): the same bytes as
    :func:`encode_envelope` without an Envelope object. The header values come from the node
    (names are str, ``kwargs`` keys are str because they came through ``**``, ``waits`` is
    built by ``runtime.chains``); only the arguments need the codec's checks. Raises like
    :func:`encode_envelope`."""
    if type(args) is not list:
        args = list(args)
    # The runtime's usual shapes directly (an ask ends at its trace, a tell at its args); the
    # rest as _trimmed lays them out.
    if kwargs or hops or sender or waits or not (trace or deadline or args):
        fields = _trimmed(
            kind, corr, None, type_name, key, method, args, deadline, trace, kwargs, hops,
            sender, 0, waits or [],
        )  # fmt: skip
    elif trace:
        fields = [VERSION, kind, corr, None, type_name, key, method, args, deadline, trace]
    elif deadline:
        fields = [VERSION, kind, corr, None, type_name, key, method, args, deadline]
    else:
        fields = [VERSION, kind, corr, None, type_name, key, method, args]
    data = codec.packb(fields)
    if len(data) > max_size:
        raise MessageTooLarge(
            f"encoded {Kind(kind).name} to {type_name}/{key}.{method} is "
            f"{len(data)} bytes, over the limit of {max_size}"
        )
    return data


def encode_reply(
    corr: int,
    sender: str,
    result: Any,
    codec: Codec = DEFAULT_CODEC,
    max_size: int = DEFAULT_MAX_FRAME,
) -> bytes:
    """Encode a REPLY envelope (the hot answer path): the same bytes as
    ``encode_envelope(Envelope(REPLY, corr, sender, body=result))`` without building and
    re-checking a header this module writes itself. Raises like :func:`encode_envelope`."""
    if sender:
        data = codec.packb(
            _trimmed(REPLY, corr, result, "", "", "", [], 0.0, 0, {}, 0, sender, 0, [])
        )
    else:
        data = codec.packb([VERSION, REPLY, corr, result])
    if len(data) > max_size:
        raise MessageTooLarge(f"encoded reply is {len(data)} bytes, over the limit of {max_size}")
    return data


def encode_attached_reply(
    corr: int,
    result: list[Any],
    attachment_size: int,
    codec: Codec = DEFAULT_CODEC,
    max_size: int = DEFAULT_MAX_FRAME,
) -> bytes:
    """The frame of an attached REPLY (see "Attached reply"): ``result`` is the array the
    attachment, ``attachment_size`` bytes, is appended to on arrival. Raises
    ``MessageTooLarge`` if frame and attachment together exceed ``max_size``, and like
    :func:`encode_envelope` for a result the codec cannot encode."""
    if type(result) is not list:
        raise SerializationError(f"an attached reply's result is a list, got {type(result)}")
    data = codec.packb([VERSION, REPLY, corr, result])
    if len(data) + attachment_size > max_size:
        raise MessageTooLarge(
            f"attached reply of {len(data)} + {attachment_size} bytes, over the limit of {max_size}"
        )
    return data


def decode_attached(
    frame: bytes,
    attachment: memoryview,
    codec: Codec = DEFAULT_CODEC,
    max_size: int = DEFAULT_MAX_FRAME,
) -> list[Any]:
    """The one envelope of an attached message, as an item of :func:`decode_fields`, with
    ``attachment`` appended to its result (see "Attached reply"). Raises ProtocolError, and
    nothing else, for anything that is not a valid attached reply; sizes are checked before
    anything is parsed."""
    if type(attachment) is not memoryview or attachment.ndim != 1 or attachment.itemsize != 1:
        raise ProtocolError(f"an attachment is a 1-D byte memoryview, got {attachment!r}")
    try:
        size = len(frame)
    except Exception as exc:
        raise ProtocolError(f"frame must be bytes, got {type(frame).__name__}") from exc
    if size + attachment.nbytes > max_size:
        raise ProtocolError(
            f"attached message of {size} + {attachment.nbytes} bytes is over the limit of "
            f"{max_size}"
        )
    items = decode_fields(frame, codec, max_size)
    if len(items) != 1:
        raise ProtocolError(f"an attached message holds one envelope, not {len(items)}")
    fields = items[0]
    if fields[F_KIND] != REPLY:
        raise ProtocolError(f"an attached message is a REPLY, not kind {fields[F_KIND]}")
    result = fields[F_BODY]
    if type(result) is not list:
        raise ProtocolError(f"an attached reply's result is an array, not {type(result).__name__}")
    result.append(attachment)
    return fields


def encode_frame(
    envs: Iterable[Envelope], codec: Codec = DEFAULT_CODEC, max_size: int = DEFAULT_MAX_FRAME
) -> bytes:
    """Encode several envelopes into one frame; MessageTooLarge if it exceeds ``max_size``."""
    data = b"".join([encode_envelope(e, codec, max_size) for e in envs])
    if len(data) > max_size:
        raise MessageTooLarge(f"frame is {len(data)} bytes, over the limit of {max_size}")
    return data


def _validate(obj: Any) -> list[Any]:
    """Check one decoded envelope array; return it (an int deadline made a float)."""
    if type(obj) is not list:
        raise ProtocolError(f"envelope must be a msgpack array, got {type(obj).__name__}")
    if not obj:
        raise ProtocolError("envelope is an empty array")
    version = obj[0]
    if type(version) is not int or version != VERSION:
        raise ProtocolError(f"unsupported protocol version {version!r} (expected {VERSION})")
    n = len(obj)
    if n != _N_FIELDS:
        if n < _MIN_FIELDS or n > _N_FIELDS:
            raise ProtocolError(
                f"envelope must have {_MIN_FIELDS} to {_N_FIELDS} elements, got {n}"
            )
        # The defaults of the trailing fields left out (fresh: lists and dicts are mutable).
        tail = ["", "", "", [], 0.0, 0, {}, 0, "", 0, []]
        if n != _MIN_FIELDS:
            obj += tail[n - _MIN_FIELDS :]
        else:
            # The shortest form (a reply, mostly): only kind and corr to check.
            obj += tail
            kind = obj[1]
            corr = obj[2]
            if type(kind) is int and 1 <= kind <= 5 and type(corr) is int and 0 <= corr <= _U64:
                return obj
    (
        _,
        kind,
        corr,
        _body,
        type_name,
        key,
        method,
        args,
        deadline,
        trace,
        kwargs,
        hops,
        sender,
        epoch,
        waits,
    ) = obj
    if not (
        type(kind) is int
        and 1 <= kind <= 5
        and type(corr) is int
        and 0 <= corr <= 0xFFFFFFFFFFFFFFFF
        and type(sender) is str
        and type(type_name) is str
        and type(key) is str
        and type(method) is str
        and type(args) is list
        and type(kwargs) is dict
        and type(deadline) is float
        and 0.0 <= deadline < _INF
        and type(hops) is int
        and 0 <= hops <= 0xFFFFFFFF
        and type(trace) is int
        and 0 <= trace <= 0xFFFFFFFFFFFFFFFF
        and type(epoch) is int
        and 0 <= epoch <= 0xFFFFFFFFFFFFFFFF
        and type(waits) is list
    ):
        # Slow path: an int deadline, or an invalid field.
        err = _field_error(
            kind, corr, sender, type_name, key, method, args, kwargs, deadline, hops, trace, epoch,
            waits,
        )  # fmt: skip
        if err is not None:
            raise ProtocolError(f"invalid envelope: {err}")
        if type(deadline) is int:
            obj[F_DEADLINE] = float(deadline)
    else:
        if kwargs:
            for k in kwargs:
                if type(k) is not str:
                    raise ProtocolError(
                        f"invalid envelope: kwargs keys must be str, got {type(k).__name__}"
                    )
        if waits:
            err = _waits_error(waits)
            if err is not None:
                raise ProtocolError(f"invalid envelope: {err}")
    return obj


def envelope_of(fields: list[Any]) -> Envelope:
    """The :class:`Envelope` of one item of :func:`decode_fields`."""
    f = fields
    return Envelope(
        f[F_KIND], f[F_CORR], f[F_SENDER], f[F_TYPE], f[F_KEY], f[F_METHOD], f[F_ARGS],
        f[F_KWARGS], f[F_DEADLINE], f[F_HOPS], f[F_TRACE], f[F_EPOCH], f[F_BODY], f[F_WAITS],
    )  # fmt: skip


def decode_frame(
    frame: bytes, codec: Codec = DEFAULT_CODEC, max_size: int = DEFAULT_MAX_FRAME
) -> list[Envelope]:
    """Decode a frame into its envelopes (at least one).

    Raises ProtocolError, and nothing else, for any input that is not a valid frame:
    empty, oversized, malformed or truncated msgpack, trailing garbage, a wrong protocol
    version, invalid fields, unknown ext codes or a failing registered decoder.
    """
    return [envelope_of(fields) for fields in decode_fields(frame, codec, max_size)]


def decode_fields(
    frame: bytes, codec: Codec = DEFAULT_CODEC, max_size: int = DEFAULT_MAX_FRAME
) -> list[list[Any]]:
    """:func:`decode_frame` without building :class:`Envelope` objects: each envelope as its
    validated array of all 15 fields (left-out ones filled with their defaults), in wire order
    ``[version, kind, corr, body, type_name, key, method, args, deadline, trace, kwargs, hops,
    sender, epoch, waits]`` (index with the ``F_*`` constants). For the hot path, where most
    envelopes are replies that only need their kind, corr and body."""
    try:
        size = len(frame)
    except Exception as exc:
        raise ProtocolError(f"frame must be bytes, got {type(frame).__name__}") from exc
    if size > max_size:
        raise ProtocolError(f"frame of {size} bytes is over the limit of {max_size}")
    if size == 0:
        raise ProtocolError("empty frame")
    hook = codec._dec_hooks[0]
    try:
        obj = msgpack.unpackb(frame, ext_hook=hook, use_list=True, raw=False, strict_map_key=False)
    except msgpack.ExtraData as extra:
        return _decode_rest(extra.unpacked, extra.extra, hook)
    except ProtocolError:
        raise
    except Exception as exc:  # includes RecursionError, MemoryError and decode-hook errors
        raise ProtocolError(f"malformed frame: {_describe(exc)}") from exc
    return [_validate(obj)]


def _decode_rest(first: Any, rest: bytes, hook: Callable[[int, bytes], Any]) -> list[list[Any]]:
    out = [_validate(first)]
    size = len(rest)
    unpacker = msgpack.Unpacker(
        ext_hook=hook,
        use_list=True,
        raw=False,
        strict_map_key=False,
        max_buffer_size=max(size, 1),
    )
    try:
        unpacker.feed(rest)
        for obj in unpacker:
            out.append(_validate(obj))
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError(f"malformed frame: {_describe(exc)}") from exc
    # Iteration stops at the end of the input or before an incomplete object; the unpacker
    # refuses to switch to read_bytes in the middle of one, which is how a truncated last
    # envelope shows (tell() would count its partial input too).
    try:
        leftover = unpacker.read_bytes(1)
    except ValueError:
        leftover = b"?"
    if leftover:
        raise ProtocolError("truncated envelope at the end of the frame")
    return out


# --------------------------------------------------------------------------------------------
# Errors on the wire
# --------------------------------------------------------------------------------------------

ERR_REMOTE: Final = 1
ERR_ACTOR: Final = 2
ERR_UNKNOWN_TYPE: Final = 3
ERR_UNKNOWN_METHOD: Final = 4
ERR_TIMEOUT: Final = 5
ERR_SERIALIZATION: Final = 6
ERR_TOO_LARGE: Final = 7
ERR_NODE_UNAVAILABLE: Final = 8
ERR_PROTOCOL: Final = 9
ERR_REDIRECT: Final = 10
ERR_DEADLOCK: Final = 11
ERR_OVERLOADED: Final = 12


class Redirect(ActorError):
    """Internal answer to an ask: the actor lives on the node whose address is the message.

    Never reaches user code: the caller's node re-sends the ask there (one extra hop) and
    corrects its location cache.
    """


_ERR_CLASSES: Final[dict[int, type[ActorError]]] = {
    ERR_REMOTE: RemoteError,
    ERR_ACTOR: ActorError,
    ERR_UNKNOWN_TYPE: UnknownActorType,
    ERR_UNKNOWN_METHOD: UnknownMethod,
    ERR_TIMEOUT: ActorTimeout,
    ERR_SERIALIZATION: SerializationError,
    ERR_TOO_LARGE: MessageTooLarge,
    ERR_NODE_UNAVAILABLE: NodeUnavailable,
    ERR_PROTOCOL: ProtocolError,
    ERR_REDIRECT: Redirect,
    ERR_DEADLOCK: Deadlock,
    ERR_OVERLOADED: Overloaded,
}
_ERR_CODES: Final[dict[type, int]] = {cls: code for code, cls in _ERR_CLASSES.items()}


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


def error_to_body(exc: BaseException, tb_text: str = "") -> list[Any]:
    """The ERROR body ``[code, type_name, message, traceback]`` for ``exc``.

    A shoal error (or a subclass: the nearest shoal class in its MRO is used) keeps its class;
    a RemoteError keeps its type_name, message and remote traceback (``tb_text`` only if it has
    none); any other exception becomes a RemoteError named after its qualified type name.
    """
    if isinstance(exc, RemoteError):
        return [
            ERR_REMOTE,
            str(exc.type_name),
            str(exc.message),
            str(exc.remote_traceback or tb_text),
        ]
    tb = str(tb_text)
    if isinstance(exc, ActorError):
        for base in type(exc).__mro__:
            code = _ERR_CODES.get(base)
            if code is not None:
                return [code, _qualname(type(exc)), _safe_str(exc), tb]
    return [ERR_REMOTE, _qualname(type(exc)), _safe_str(exc), tb]


def body_to_error(body: Any) -> ActorError:
    """Rebuild the error from an ERROR body; never raises.

    Returns a ProtocolError describing the problem if ``body`` is malformed, and a
    RemoteError for a well-formed body with an unknown code (from a newer peer).
    """
    if type(body) is not list and type(body) is not tuple:
        return ProtocolError(f"malformed error body: expected an array, got {type(body).__name__}")
    if len(body) != 4:
        return ProtocolError(f"malformed error body: expected 4 elements, got {len(body)}")
    code, type_name, message, tb = body
    if type(code) is not int:
        return ProtocolError(f"malformed error body: code must be int, got {type(code).__name__}")
    if type(type_name) is not str or type(message) is not str or type(tb) is not str:
        return ProtocolError("malformed error body: type_name, message, traceback must be str")
    cls = _ERR_CLASSES.get(code)
    if cls is None or cls is RemoteError:
        return RemoteError(type_name, message, tb)
    try:
        return cls(message)
    except Exception as exc:  # pragma: no cover - all shoal errors take a message
        return ProtocolError(f"cannot rebuild {cls.__name__}: {_describe(exc)}")


# --------------------------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------------------------


def reply_to(env: Envelope, result: Any, sender: str = "", epoch: int | None = None) -> Envelope:
    """A REPLY to ``env`` carrying ``result``; copies corr, trace, target and deadline."""
    return Envelope(
        REPLY,
        env.corr,
        sender,
        env.type_name,
        env.key,
        env.method,
        [],
        {},
        env.deadline,
        0,
        env.trace,
        env.epoch if epoch is None else epoch,
        result,
    )


def error_reply(
    env: Envelope,
    exc: BaseException,
    tb: str = "",
    sender: str = "",
    epoch: int | None = None,
) -> Envelope:
    """An ERROR reply to ``env`` whose body is :func:`error_to_body` of ``exc``."""
    return Envelope(
        ERROR,
        env.corr,
        sender,
        env.type_name,
        env.key,
        env.method,
        [],
        {},
        env.deadline,
        0,
        env.trace,
        env.epoch if epoch is None else epoch,
        error_to_body(exc, tb),
    )
