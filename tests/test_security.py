"""Keyed links (``runtime.security``): key files, their validation, ZAP on the loop, and a keyed
cluster of real node processes that an untrusted peer cannot touch.

The attack tests send the same frames to an unkeyed node first, where each of them has its
effect (a reply, a listed member, a planted activation), so that the keyed cluster's silence
is the keys' doing and not a malformed frame's. What the keyed cluster holds afterwards is
checked exactly through a trusted client.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio
import zmq.auth
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

from runtime.security import (
    ZAP_DOMAIN,
    CurveKeys,
    ZapHandler,
    keygen,
    load_keys,
    read_certificate,
)

pytestmark = pytest.mark.timeout(120)

WAIT = 5.0


# --------------------------------------------------------------------------- key files


def test_keygen_writes_a_pair_zmq_reads_with_the_secret_private(tmp_path: Path) -> None:
    public, secret = keygen(tmp_path / "keys", "alpha")
    assert (public.name, secret.name) == ("alpha.key", "alpha.key_secret")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) & 0o077 != 0o077  # readable: it is public
    pub, sec = zmq.auth.load_certificate(secret)
    assert sec is not None and zmq.curve_public(sec) == pub
    assert zmq.auth.load_certificate(public) == (pub, None)
    assert zmq.auth.load_certificates(public.parent) == {pub: True}
    keys = load_keys(secret, public.parent)
    assert keys == CurveKeys(pub, sec, frozenset([pub]))


def test_keygen_refuses_to_overwrite_and_bad_names(tmp_path: Path) -> None:
    public, secret = keygen(tmp_path)
    before = secret.read_bytes()
    with pytest.raises(FileExistsError, match="not overwriting"):
        keygen(tmp_path)
    assert secret.read_bytes() == before
    public.unlink()
    with pytest.raises(FileExistsError):  # the secret alone is enough to refuse
        keygen(tmp_path)
    for bad in ("", ".hidden", "a/b"):
        with pytest.raises(ValueError, match="plain file name"):
            keygen(tmp_path, bad)


def test_load_keys_reads_pyzmq_certificates(tmp_path: Path) -> None:
    (tmp_path / "trust").mkdir()
    pub, secret_file = zmq.auth.create_certificates(tmp_path, "node")
    other, _ = zmq.auth.create_certificates(tmp_path / "trust", "other")
    keys = load_keys(secret_file, tmp_path / "trust")
    assert keys is not None
    assert keys.public == read_certificate(Path(pub), "x")[0]
    assert keys.trusted == {read_certificate(Path(other), "x")[0]}


def test_no_key_and_no_trust_is_no_curve() -> None:
    assert load_keys(None, None) is None


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """A secret key file and a trust directory holding its public key."""
    public, secret = keygen(tmp_path / "me")
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "me.key").write_bytes(public.read_bytes())
    return secret, trust


def test_key_and_trust_go_together(pair: tuple[Path, Path]) -> None:
    secret, trust = pair
    with pytest.raises(ValueError, match=r"^key needs trust as well.*trust=None"):
        load_keys(secret, None)
    with pytest.raises(ValueError, match=r"^trust needs key as well.*key=None"):
        load_keys(None, trust)
    with pytest.raises(ValueError, match=r"^--key needs --trust"):
        load_keys(secret, None, key_option="--key", trust_option="--trust")


def test_values_that_are_not_paths_are_type_errors(pair: tuple[Path, Path]) -> None:
    secret, trust = pair
    with pytest.raises(TypeError, match=r"^key must be the path of a secret key file.*123"):
        load_keys(123, trust)
    with pytest.raises(TypeError, match=r"^trust must be the path of a directory"):
        load_keys(secret, b"/tmp")
    with pytest.raises(ValueError, match=r"^key must be the path.*not an empty string"):
        load_keys("", trust)


def test_a_key_that_is_missing_or_not_a_key_is_refused(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    _, trust = pair
    missing = tmp_path / "nope.key_secret"
    with pytest.raises(ValueError, match=rf"^key '{missing}': no such file"):
        load_keys(missing, trust)
    with pytest.raises(ValueError, match=r"is a directory, not a key file"):
        load_keys(tmp_path, trust)
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(ValueError, match=rf"^key '{text}' is not a CURVE key file"):
        load_keys(text, trust)
    short = tmp_path / "short.key_secret"
    short.write_text('public-key = "abc"\nsecret-key = "def"\n')
    with pytest.raises(ValueError, match="is not a CURVE key file"):
        load_keys(short, trust)
    with pytest.raises(ValueError, match=r"holds a public key only: pass the secret key file"):
        load_keys(trust / "me.key", trust)
    pub, sec = zmq.curve_keypair()
    bad_secret = tmp_path / "bad.key_secret"
    bad_secret.write_text(f'public-key = "{pub.decode()}"\nsecret-key = "{"0" * 39}~"\n')
    with pytest.raises(ValueError, match="its secret-key is not a z85-encoded key"):
        load_keys(bad_secret, trust)
    other_pub, _ = zmq.curve_keypair()
    mixed = tmp_path / "mixed.key_secret"
    mixed.write_text(f'public-key = "{other_pub.decode()}"\nsecret-key = "{sec.decode()}"\n')
    with pytest.raises(ValueError, match="does not belong to its public-key"):
        load_keys(mixed, trust)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_key_is_refused(pair: tuple[Path, Path]) -> None:
    secret, trust = pair
    secret.chmod(0)
    with pytest.raises(ValueError, match="cannot be read"):
        load_keys(secret, trust)


def test_a_trust_directory_must_hold_valid_public_keys(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    secret, trust = pair
    with pytest.raises(ValueError, match=rf"^trust '{tmp_path / 'none'}': no such directory"):
        load_keys(secret, tmp_path / "none")
    with pytest.raises(ValueError, match="is not a directory"):
        load_keys(secret, secret)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README").write_text("not a key, and not named *.key: ignored\n")
    with pytest.raises(ValueError, match=r"holds no public keys \(NAME.key files"):
        load_keys(secret, empty)
    (trust / "broken.key").write_text("nothing here\n")
    with pytest.raises(ValueError, match=r"^trust file '.*broken.key' is not a CURVE key file"):
        load_keys(secret, trust)


def test_a_secret_readable_by_others_is_warned_about(
    pair: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    secret, trust = pair
    secret.chmod(0o644)
    assert load_keys(secret, trust) is not None
    assert "can be read by others (mode 644)" in caplog.text


# --------------------------------------------------------------------------- ZAP


def _request(key: bytes, mechanism: bytes = b"CURVE") -> list[bytes]:
    return [b"1.0", b"7", ZAP_DOMAIN, b"10.0.0.9", b"", mechanism, z85.decode(key)]


def test_zap_answers_trusted_keys_only() -> None:
    good, _ = zmq.curve_keypair()
    bad, _ = zmq.curve_keypair()
    zap = ZapHandler(None, frozenset([good]))
    assert zap.answer(_request(good)) == [b"1.0", b"7", b"200", b"OK", good, b""]
    assert zap.answer(_request(bad))[:3] == [b"1.0", b"7", b"400"]
    assert zap.answer(_request(good, b"PLAIN"))[2] == b"400"
    assert zap.answer(_request(good)[:6])[2] == b"400"  # no credentials
    assert zap.answer([b"2.0", b"8", b"", b"", b"", b"CURVE", b"x"])[:3] == [b"1.0", b"8", b"400"]
    assert zap.answer([b"x"])[2] == b"400"
    assert (zap.allowed, zap.denied) == (1, 3)


@dataclass
class _Link:
    sock: Any
    mon: Any
    public: bytes


@pytest.fixture
async def zctx() -> AsyncIterator[zmq.asyncio.Context]:
    ctx = zmq.asyncio.Context()
    try:
        yield ctx
    finally:
        ctx.destroy(linger=0)


def _curve_router(ctx: Any, public: bytes, secret: bytes) -> tuple[Any, str]:
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.curve_server = True
    sock.curve_publickey, sock.curve_secretkey = public, secret
    sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
    sock.bind("tcp://127.0.0.1:0")
    return sock, sock.getsockopt_string(zmq.LAST_ENDPOINT)


_HANDSHAKES = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
)


def _curve_dealer(
    ctx: Any, address: str, server: bytes, pair: tuple[bytes, bytes] | None = None
) -> _Link:
    """A CURVE client DEALER with key ``pair`` (default: a fresh one); its monitor reports
    handshakes."""
    public, secret = pair or zmq.curve_keypair()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, server
    mon = sock.get_monitor_socket(_HANDSHAKES)
    sock.connect(address)
    return _Link(sock, mon, public)


async def _handshake(link: _Link) -> int:
    async with asyncio.timeout(WAIT):
        event: int = parse_monitor_message(await link.mon.recv_multipart())["event"]
    return event


async def test_zap_handler_lets_in_trusted_clients_on_the_loop(zctx: zmq.asyncio.Context) -> None:
    public, secret = zmq.curve_keypair()
    router, address = _curve_router(zctx, public, secret)
    trusted_public, trusted_secret = zmq.curve_keypair()
    zap = ZapHandler(zctx, frozenset([trusted_public]))
    zap.start(asyncio.get_running_loop())
    # a client whose key is trusted, and another one
    trusted = _curve_dealer(zctx, address, public, (trusted_public, trusted_secret))
    stranger = _curve_dealer(zctx, address, public)
    try:
        assert await _handshake(trusted) == zmq.EVENT_HANDSHAKE_SUCCEEDED
        assert await _handshake(stranger) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
        await trusted.sock.send(b"hello")
        async with asyncio.timeout(WAIT):
            assert (await router.recv_multipart())[1:] == [b"hello"]
        assert (zap.allowed, zap.denied) == (1, 1)
        with pytest.raises(ValueError, match="a context serves one keyed transport"):
            ZapHandler(zctx, frozenset()).start(asyncio.get_running_loop())
    finally:
        zap.close()
        for link in (trusted, stranger):
            link.sock.disable_monitor()
            link.mon.close(linger=0)
            link.sock.close(linger=0)
        router.close(linger=0)


async def test_without_a_zap_handler_a_keyed_router_lets_nobody_in(
    zctx: zmq.asyncio.Context,
) -> None:
    # ZAP_ENFORCE_DOMAIN: no handler means every handshake fails (closed, not open)
    public, secret = zmq.curve_keypair()
    router, address = _curve_router(zctx, public, secret)
    link = _curve_dealer(zctx, address, public)
    try:
        assert await _handshake(link) == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    finally:
        link.sock.disable_monitor()
        link.mon.close(linger=0)
        link.sock.close(linger=0)
        router.close(linger=0)
