"""Keyed links (``runtime.security``): key files, their validation, ZAP on the loop, and a keyed
cluster of real node processes that an untrusted peer cannot touch.

The attack tests send the same frames to an unkeyed node first, where each of them has its
effect (a reply, a listed member, a planted activation), so that the keyed cluster's silence
is the keys' doing and not a malformed frame's. What the keyed cluster holds afterwards is
checked exactly through a trusted client.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio
import zmq.auth
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

from actors import Node, NodeUnavailable
from runtime import wire
from runtime.security import (
    ZAP_DOMAIN,
    CurveKeys,
    ZapHandler,
    keygen,
    load_keys,
    read_certificate,
)
from tests.cluster import NodeProcess, converged_client, info_keys, ring_owner

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


# --------------------------------------------------------------------------- real processes


class Keyring:
    """Key pairs for ``nodes`` node processes and a client, all trusted (one shared trust
    directory), and a ``stranger`` pair that is not."""

    def __init__(self, root: Path, nodes: int) -> None:
        self.trust = root / "trust"
        self.nodes = [keygen(root / f"node{i}")[1] for i in range(nodes)]
        self.client = keygen(root / "client")[1]
        self.stranger = keygen(root / "stranger")[1]
        self.trust.mkdir()
        for secret in [*self.nodes, self.client]:
            public = secret.with_suffix(".key")
            (self.trust / f"{public.parent.name}.key").write_bytes(public.read_bytes())

    def args(self, i: int) -> list[str]:
        return ["--key", str(self.nodes[i]), "--trust", str(self.trust)]

    @staticmethod
    def pair(secret: Path) -> tuple[bytes, bytes]:
        public, sec = read_certificate(secret, "key")
        assert sec is not None
        return public, sec


@dataclass
class KeyedCluster:
    keys: Keyring
    procs: list[NodeProcess]

    @property
    def addresses(self) -> list[str]:
        return sorted(p.address for p in self.procs)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyedCluster]:
    """Three keyed node processes sharing one trust directory (killed at the end)."""
    keys = Keyring(tmp_path_factory.mktemp("keys"), 3)
    procs: list[NodeProcess] = []
    try:
        procs.append(NodeProcess(extra=keys.args(0)))
        for i in (1, 2):
            procs.append(NodeProcess(seeds=[procs[0].address], extra=keys.args(i)))
        yield KeyedCluster(keys, procs)
    finally:
        for p in procs:
            p.kill()


@pytest.fixture(scope="module")
def plain() -> Iterator[NodeProcess]:
    """An unkeyed node process: where the attackers' frames are shown to work."""
    node = NodeProcess()
    try:
        yield node
    finally:
        node.kill()


def _client(keyed: KeyedCluster) -> Any:
    return converged_client(
        keyed.procs, 3, key=keyed.keys.client, trust=keyed.keys.trust, check_serializable=True
    )


def _key_on(members: list[str], type_name: str, address: str, prefix: str) -> str:
    for i in range(10_000):
        if ring_owner(members, type_name, f"{prefix}-{i}") == address:
            return f"{prefix}-{i}"
    raise AssertionError(f"no {type_name} key lands on {address}")


@pytest.mark.slow
async def test_a_keyed_cluster_asks_tells_migrates_and_moves_data(keyed: KeyedCluster) -> None:
    async with _client(keyed) as client:
        members = keyed.addresses
        c = client.ref("Counter", "keyed-counter")
        assert await c.incr(5) == 5
        for _ in range(100):
            await c.incr.tell(1)
        assert await c.peek() == 105  # tells and asks from one sender keep their order
        where = await client.locate(c)
        to = next(a for a in members if a != where)
        await client.migrate(c, to=to)
        assert await client.locate(c) == to and await c.incr(1) == 106
        holder, other = members[0], members[1]
        shelf = client.ref("Shelf", _key_on(members, "Shelf", holder, "keyed-shelf"))
        reader = client.ref("Reader", _key_on(members, "Reader", other, "keyed-reader"))
        payload = bytes(range(256)) * 20_000  # 5 MB: several chunks
        ref = await shelf.keep("keyed-data", payload)
        assert ref.node == holder
        assert await reader.fetch.ask(ref, timeout=30) == payload  # node to node
        assert await ref.get() == payload  # node to client


def _frames(target_sender: str) -> dict[str, bytes]:
    """What an attacker sends: a public method call, three CONTROL operations and a SWIM
    join of a fake member, each one encoded envelope."""
    now = time.time()
    envelopes = {
        "ask": wire.Envelope(
            wire.ASK, 7, type_name="Counter", key="vault", method="incr", args=[50],
            deadline=now + 30,
        ),
        "members": wire.Envelope(wire.CONTROL, 8, "tcp://127.0.0.1:9", method="members"),
        "data": wire.Envelope(
            wire.CONTROL, 9, "tcp://127.0.0.1:9", method="data", body=["vault-data", 0, 1 << 20]
        ),
        "handoff": wire.Envelope(  # (a client may not plant a state: it poses as a member)
            wire.CONTROL, 10, target_sender, method="handoff",
            body=["Counter", "planted", {"count": 999}, 1],
        ),
        "join": wire.Envelope(
            wire.CONTROL, 0, FAKE, method="swim", body=["join", [FAKE, 1, 0, [["Counter"], {}]]]
        ),
    }  # fmt: skip
    return {name: wire.encode_envelope(env) for name, env in envelopes.items()}


#: The member an attacker's SWIM join tries to plant (nothing listens there).
FAKE = "tcp://127.0.0.1:9"


class Attacker:
    """A raw zmq DEALER (no key, or a CURVE client with an untrusted key) against one node,
    with a monitor of its handshakes; every socket closed with linger 0."""

    def __init__(self, ctx: Any, address: str, curve: tuple[bytes, bytes, bytes] | None) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            public, secret, server = curve
            self.sock.curve_publickey, self.sock.curve_secretkey = public, secret
            self.sock.curve_serverkey = server
        self.mon = self.sock.get_monitor_socket(_HANDSHAKES)
        self.sock.connect(address)

    async def handshake(self) -> int:
        return await _handshake(_Link(self.sock, self.mon, b""))

    async def send_all(self, frames: dict[str, bytes]) -> None:
        for frame in frames.values():
            await self.sock.send(frame)

    async def replies(self, timeout: float) -> list[list[bytes]]:
        """Every message that arrives within ``timeout`` seconds."""
        got: list[list[bytes]] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while True:
                    got.append(await self.sock.recv_multipart())
        return got

    def close(self) -> None:
        self.sock.disable_monitor()
        self.mon.close(linger=0)
        self.sock.close(linger=0)


@pytest.mark.slow
async def test_the_attack_frames_work_on_an_unkeyed_node(
    plain: NodeProcess, zctx: zmq.asyncio.Context
) -> None:
    """The positive control: against a node without keys, each frame has its effect."""
    async with converged_client([plain], 1) as client:
        await client.ref("Counter", "vault").incr(100)
        await client.ref("Shelf", "s").keep("vault-data", b"the secret")
        attacker = Attacker(zctx, plain.address, None)
        try:
            assert await attacker.handshake() == zmq.EVENT_HANDSHAKE_SUCCEEDED
            frames = _frames(plain.address)
            for name in ("ask", "members", "data", "handoff"):
                await attacker.sock.send(frames[name])
                async with asyncio.timeout(WAIT):
                    answer = await attacker.sock.recv_multipart()
                [env] = wire.decode_frame(answer[0])
                assert env.kind == wire.REPLY, (name, env)
                if name == "ask":
                    assert env.body == 150
                elif name == "members":
                    assert [m[0] for m in env.body] == [plain.address]
                elif name == "data":
                    assert answer[1] == b"the secret"
            assert await client.ref("Counter", "planted").peek() == 999
            # (a SWIM join of a fake member has no effect even here: a joiner is admitted
            # only once it answers a ping at its address, see tests/test_swim.py)
        finally:
            attacker.close()


@pytest.mark.slow
async def test_an_untrusted_peer_gets_nothing_from_a_keyed_cluster(
    keyed: KeyedCluster, zctx: zmq.asyncio.Context
) -> None:
    target = keyed.procs[0]
    async with _client(keyed) as client:
        vault = client.ref("Counter", "vault")
        before = await vault.incr(100)
        secret_ref = await client.ref("Shelf", "vault-shelf").keep("vault-data", b"the secret")
        server_key = read_certificate(keyed.keys.nodes[0].with_suffix(".key"), "key")[0]
        stranger_public, stranger_secret = Keyring.pair(keyed.keys.stranger)
        attackers = {
            "no key": Attacker(zctx, target.address, None),
            "untrusted key": Attacker(
                zctx, target.address, (stranger_public, stranger_secret, server_key)
            ),
        }
        try:
            expected = {
                "no key": {
                    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
                    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                },
                "untrusted key": {zmq.EVENT_HANDSHAKE_FAILED_AUTH},
            }
            for name, attacker in attackers.items():
                await attacker.send_all(_frames(target.address))
                assert await attacker.handshake() in expected[name], name
            # an attacker never completes a handshake, so its frames never leave its socket:
            # nothing comes back (a bounded look), and nothing changed on the cluster
            for name, attacker in attackers.items():
                assert await attacker.replies(0.5) == [], name
        finally:
            for attacker in attackers.values():
                attacker.close()
        assert await vault.peek() == before  # no actor call
        assert sorted(client.members) == keyed.addresses  # no SWIM join
        for key in (await info_keys(client, keyed.addresses)).values():
            assert sorted(await client.ref("NodeInfo", key).view()) == keyed.addresses
        assert await client.locate(client.ref("Counter", "planted")) is None  # no handoff
        assert await secret_ref.get() == b"the secret"  # the node keeps serving
        await target.await_output("refused a handshake", 10)
    # a keyed client with an untrusted key, and one without keys, cannot even join
    for options in ({"key": keyed.keys.stranger, "trust": keyed.keys.trust}, {}):
        outsider = Node(seeds=[target.address], serve=(), join_timeout=2, **options)
        with pytest.raises(NodeUnavailable, match="no seed"):
            await outsider.start()
        await outsider.stop()
