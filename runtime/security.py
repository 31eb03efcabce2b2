"""CurveZMQ for node links: key files, the trust set, and ZAP answered on the event loop.

A keyed node (``Node(key=PATH, trust=DIR)``, ``shoal node --key FILE --trust DIR``) has one
CURVE key pair, its identity: the ROUTER it listens on is a CURVE server with it, and every
DEALER it opens is a CURVE client with it. ``trust`` is a directory of public keys, the set of
peers it lets in and talks to:

* on the ROUTER, libzmq asks :class:`ZapHandler` (ZAP, RFC 27) about every CURVE handshake,
  and the handler lets in only clients whose public key is in the trust set. The ROUTER sets
  ``ZAP_ENFORCE_DOMAIN``, so without a handler the handshake fails (closed, not open);
* a DEALER speaks only to a server that proves it holds the secret key of a trusted public key
  (how a DEALER finds which one: ``runtime.zmq_transport``, "Keyed links").

An untrusted peer never completes a handshake, so no frame of its reaches the node: no actor
call, no control operation, no SWIM message, no data. Keys are read once, when the node is
built; the handler runs in the loop only at handshakes, never per message.

Files are zmq's certificate format (``zmq.auth.create_certificates``; :func:`keygen` writes the
same): ``NAME.key`` holds the public key (share it), ``NAME.key_secret`` the public and secret
keys (mode 0600; keep it). ``zmq.auth.load_certificate`` reads both.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import zmq
from zmq.utils import z85

__all__ = [
    "ZAP_DOMAIN",
    "ZAP_ENDPOINT",
    "CurveKeys",
    "ZapHandler",
    "keygen",
    "load_keys",
    "read_certificate",
]

log = logging.getLogger("shoal.security")

ZAP_ENDPOINT: Final = "inproc://zeromq.zap.01"
"""Where libzmq sends a context's ZAP requests (fixed by RFC 27)."""
ZAP_DOMAIN: Final = b"shoal"
"""The ZAP domain of a keyed node's ROUTER."""

_Z85_CHARS: Final = frozenset(
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
)
_DENIAL_LOG_INTERVAL: Final = 10.0

_PUBLIC_BANNER: Final = """\
#   ****  Generated on {0} by shoal keygen  ****
#   ZeroMQ CURVE Public Certificate
#   Put a copy of this file in the trust directory of every node that may talk to its owner.

"""
_SECRET_BANNER: Final = """\
#   ****  Generated on {0} by shoal keygen  ****
#   ZeroMQ CURVE **Secret** Certificate
#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.

"""


@dataclass(frozen=True, slots=True)
class CurveKeys:
    """A node's key pair and the public keys it trusts, all z85-encoded (40 bytes each)."""

    public: bytes
    secret: bytes
    trusted: frozenset[bytes]


def _z85_key(text: bytes) -> bytes | None:
    """``text`` if it is a z85-encoded 32-byte key, else None."""
    if len(text) != 40 or not _Z85_CHARS.issuperset(text):
        return None
    try:
        return text if len(z85.decode(text)) == 32 else None
    except (ValueError, KeyError):  # pragma: no cover - excluded by the alphabet check
        return None


def read_certificate(path: Path, option: str) -> tuple[bytes, bytes | None]:
    """The ``(public, secret)`` z85 keys of a zmq certificate file (``secret`` None in a
    public one). Raises ``ValueError`` naming ``option`` and ``path`` when the file is missing,
    unreadable or not a certificate (a key that is not 40 z85 characters counts as none)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{option} {str(path)!r}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{option} {str(path)!r} is a directory, not a key file") from None
    except OSError as exc:
        raise ValueError(f"{option} {str(path)!r} cannot be read: {exc.strerror}") from None
    found: dict[bytes, bytes] = {}
    for line in raw.splitlines():
        line = line.strip()
        if line.startswith(b"#"):
            continue
        name, sep, value = line.partition(b"=")
        name = name.strip()
        if sep and name in (b"public-key", b"secret-key") and name not in found:
            found[name] = value.strip().strip(b"'\" \t")
    public = found.get(b"public-key")
    secret = found.get(b"secret-key")
    if public is None or _z85_key(public) is None:
        raise ValueError(
            f"{option} {str(path)!r} is not a CURVE key file (no valid public-key line; "
            "`shoal keygen DIR` writes one)"
        )
    if secret is not None and _z85_key(secret) is None:
        raise ValueError(f"{option} {str(path)!r}: its secret-key is not a z85-encoded key")
    return public, secret


def _path(value: Any, option: str, what: str) -> Path:
    if isinstance(value, bytes) or not isinstance(value, str | os.PathLike):
        raise TypeError(f"{option} must be the path of {what} (str or os.PathLike), not {value!r}")
    text = os.fspath(value)
    if not text:
        raise ValueError(f"{option} must be the path of {what}, not an empty string")
    return Path(text)


def load_keys(
    key: Any, trust: Any, *, key_option: str = "key", trust_option: str = "trust"
) -> CurveKeys | None:
    """Read a node's key pair from ``key`` (a ``.key_secret`` file) and the public keys it
    trusts from the ``*.key`` files in ``trust``; None when both are None (no CURVE).

    Raises ``TypeError`` for a value that is not a path and ``ValueError`` (naming the option
    and the value) for one without the other, a missing or unreadable file or directory, a
    file that is not a key, a key file without its secret, a secret that does not belong to
    its public key, and a trust directory without any public key. ``key_option`` and
    ``trust_option`` are the names the messages use (``--key`` on the command line)."""
    if key is None and trust is None:
        return None
    if key is None or trust is None:
        given, missing = (key_option, trust_option) if trust is None else (trust_option, key_option)
        raise ValueError(
            f"{given} needs {missing} as well: CURVE needs this node's key pair and the "
            f"directory of the public keys it trusts (got {key_option}={key!r}, "
            f"{trust_option}={trust!r})"
        )
    key_path = _path(key, key_option, "a secret key file")
    trust_path = _path(trust, trust_option, "a directory of public keys")
    public, secret = read_certificate(key_path, key_option)
    if secret is None:
        raise ValueError(
            f"{key_option} {str(key_path)!r} holds a public key only: pass the secret key file "
            "(NAME.key_secret, written beside NAME.key by `shoal keygen`)"
        )
    if zmq.curve_public(secret) != public:
        raise ValueError(
            f"{key_option} {str(key_path)!r}: its secret-key does not belong to its public-key"
        )
    mode = key_path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "the secret key file %s can be read by others (mode %o); chmod 600 it",
            key_path,
            stat.S_IMODE(mode),
        )
    if not trust_path.exists():
        raise ValueError(f"{trust_option} {str(trust_path)!r}: no such directory")
    if not trust_path.is_dir():
        raise ValueError(f"{trust_option} {str(trust_path)!r} is not a directory")
    try:
        files = sorted(trust_path.glob("*.key"))
    except OSError as exc:  # pragma: no cover - glob swallows most errors itself
        raise ValueError(f"{trust_option} {str(trust_path)!r} cannot be read: {exc}") from None
    if not files and not os.access(trust_path, os.R_OK | os.X_OK):
        raise ValueError(f"{trust_option} {str(trust_path)!r} cannot be read")
    trusted = frozenset(read_certificate(f, f"{trust_option} file")[0] for f in files)
    if not trusted:
        raise ValueError(
            f"{trust_option} {str(trust_path)!r} holds no public keys (NAME.key files, as "
            "`shoal keygen` writes)"
        )
    return CurveKeys(public, secret, trusted)


def keygen(directory: str | os.PathLike[str], name: str = "node") -> tuple[Path, Path]:
    """Write a new key pair into ``directory`` (made if missing): ``NAME.key`` (public) and
    ``NAME.key_secret`` (public and secret, mode 0600). Returns their paths. Refuses
    (``FileExistsError``) to overwrite either file; ``ValueError`` for a bad ``name``."""
    if not name or name.startswith(".") or os.sep in name or (os.altsep or os.sep) in name:
        raise ValueError(f"a key name is a plain file name, not {name!r}")
    where = Path(directory)
    where.mkdir(parents=True, exist_ok=True)
    public_path, secret_path = where / f"{name}.key", where / f"{name}.key_secret"
    for path in (public_path, secret_path):
        if path.exists():
            raise FileExistsError(f"{path} exists already: not overwriting a key")
    public, secret = zmq.curve_keypair()
    now = datetime.datetime.now().replace(microsecond=0)
    body = f'metadata\ncurve\n    public-key = "{public.decode()}"\n'
    # The secret is written into a file that is 0600 from the start (never readable by others).
    fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(_SECRET_BANNER.format(now) + body + f'    secret-key = "{secret.decode()}"\n')
    fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(_PUBLIC_BANNER.format(now) + body)
    return public_path, secret_path


class ZapHandler:
    """Answers a zmq context's ZAP requests on the event loop: a CURVE client is let in if and
    only if its public key is in ``trusted`` (z85); anything else is refused.

    A REP socket bound to :data:`ZAP_ENDPOINT` in the context, read from a loop reader (no
    thread, no task); libzmq asks it once per handshake, never per message. ``allowed`` and
    ``denied`` count the answers."""

    __slots__ = ("_ctx", "_last_denial_log", "_loop", "_sock", "allowed", "denied", "trusted")

    def __init__(self, ctx: Any, trusted: frozenset[bytes]) -> None:
        self._ctx = ctx
        self.trusted = trusted
        self._sock: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_denial_log = -_DENIAL_LOG_INTERVAL
        self.allowed = 0
        self.denied = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind and start answering. ``ValueError`` if the context has a handler already."""
        sock = self._ctx.socket(zmq.REP, socket_class=zmq.Socket)  # plain, in any context
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.bind(ZAP_ENDPOINT)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            raise ValueError(
                f"cannot answer ZAP requests in this zmq context ({exc}): a context serves "
                "one keyed transport"
            ) from exc
        self._sock, self._loop = sock, loop
        loop.add_reader(sock.FD, self._on_readable)
        loop.call_soon(self._on_readable)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(sock.FD)
        sock.close(linger=0)

    def _on_readable(self) -> None:
        # Read until EAGAIN: that also processes the socket's commands, re-arming its FD edge.
        while self._sock is not None:
            try:
                request = self._sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:
                return
            answer = self.answer(request)
            try:
                self._sock.send_multipart(answer, zmq.NOBLOCK)
            except zmq.ZMQError as exc:  # pragma: no cover - inproc REP always takes it
                log.warning("could not answer a ZAP request: %s", exc)

    def answer(self, request: list[bytes]) -> list[bytes]:
        """The ZAP reply to ``request`` (a REP socket answers every request, even a bad one)."""
        request_id = request[1] if len(request) > 1 else b""
        if len(request) < 6 or request[0] != b"1.0":
            return [b"1.0", request_id, b"400", b"malformed ZAP request", b"", b""]
        address, mechanism, credentials = request[3], request[5], request[6:]
        if mechanism == b"CURVE" and len(credentials) == 1 and len(credentials[0]) == 32:
            key = z85.encode(credentials[0])
            if key in self.trusted:
                self.allowed += 1
                return [b"1.0", request_id, b"200", b"OK", key, b""]
            reason = f"key {key.decode()} is not trusted"
        else:
            reason = f"mechanism {mechanism!r} is not CURVE"
        self.denied += 1
        self._log_denial(address, reason)
        return [b"1.0", request_id, b"400", b"not trusted", b"", b""]

    def _log_denial(self, address: bytes, reason: str) -> None:
        loop = self._loop
        now = loop.time() if loop is not None else 0.0
        what = f"refused a handshake from {address.decode('ascii', 'replace')!r}: {reason}"
        if now - self._last_denial_log >= _DENIAL_LOG_INTERVAL:
            self._last_denial_log = now
            log.warning("%s (%d refused so far)", what, self.denied)
        else:
            log.debug("%s", what)
