"""The node's membership service and its partition of the actor directory.

It runs the SWIM state machine (``router.swim``) over the node's messaging, keeps the ring of
hosting members (``router.membership``) in step with what SWIM reports, owns this node's
partition of the actor directory (``router.directory``) with its view-sync rounds, and keeps
the request gate (quorum and lease). Around it: ``runtime.locator`` answers where a call goes
(with the location cache this module clears on every ring change), ``runtime.placement``
decides where a new activation goes, ``runtime.control`` handles what peers send, and
``runtime.migration`` moves activations (a graceful leave included).

Placement and single activation (see also the README's "Cluster" section):

* The ring owner of an actor's key is the authority on where its activation lives. By default
  the owner hosts it: a call takes one hop and needs no lookup.
* The directory records only exceptions: activations that stayed on a node when a join moved
  ownership of their key elsewhere (the host registers them with the new owner). Callers that
  reach an owner for such an actor get a redirect and cache the host: one extra hop, once.
* An owner activates only in a *settled* view: after every membership change it sends its view
  to every other member, which merge it before they answer with the activations they host and
  do not own (``router.directory`` states the invariant and argues it). First calls that reach
  an owner whose view is not settled wait for it, then go where the settled view says.
* Partition rule (from SWIM): a member that cannot reach a majority of the last agreed view
  refuses to serve (``NodeUnavailable``) and drops its activations; the majority side removes
  the unreachable members and reactivates their actors. Healed members learn they were declared
  dead, drop everything and rejoin as new incarnations.
* A graceful leave hands every activation, state included, to its new owner before the node
  announces that it leaves.

A pure client (no ``listen``) takes no part in SWIM: it asks a member for the member list
when it starts and every ``CLIENT_REFRESH`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from actors.errors import ActorError, NodeUnavailable, UnknownActorType
from router.directory import MOVING, Directory, EpochClock, ViewSync
from router.membership import Member, Membership
from router.ring import Ring
from router.swim import Status, Swim, SwimConfig
from runtime import wire
from runtime.clock import Clock
from runtime.lifecycle import MIGRATING
from runtime.messaging import Messaging, RemoteReply, Request
from runtime.transport import Route

if TYPE_CHECKING:
    from actors.decorator import ActorType
    from runtime.activation import Activation
    from runtime.catalog import Catalog
    from runtime.locator import LocationCache

__all__ = ["Cluster", "actor_body"]

log = logging.getLogger("shoal.cluster")

#: Seconds one view-sync request waits for its answer before it is sent again.
SYNC_TIMEOUT: Final = 1.0
#: Seconds between attempts to reach a member that did not confirm a view.
SYNC_RETRY: Final = 0.05
#: Most requests held while a node confirms its membership after a stall.
MAX_HELD: Final = 100_000
#: Seconds a leaving node keeps redirecting calls after it announced its leave.
LEAVE_LINGER: Final = 0.5
#: Seconds between a client's member-list refreshes.
CLIENT_REFRESH: Final = 1.0
#: Most hops (forwards) one tell may take.
MAX_HOPS: Final = 3
#: Most redirects one ask follows. Members that disagree about the ring for a moment may send
#: an ask back and forth; the caller then waits a little before it follows the redirect again.
MAX_REDIRECTS: Final = 10


class Cluster:
    """Membership, placement and directory for one node."""

    def __init__(
        self,
        messaging: Messaging,
        address: str,
        types: Iterable[str],
        resources: dict[str, float],
        hosting: bool,
        *,
        catalog: Catalog,
        known: Mapping[str, ActorType],
        locations: LocationCache,
        request: Request,
        swim_config: SwimConfig | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.messaging = messaging
        self._catalog = catalog
        self._known = known
        self._locations = locations
        self._request = request
        #: where requests held at the gate go once this node knows it is a member (the
        #: inbound dispatch, wired by the node)
        self.release: Callable[[list[Any], Route], None] = _refuse
        self.address = address
        self.hosting = hosting
        self._types = sorted(types)
        self._resources = resources
        self.clock = clock if clock is not None else Clock()
        self._rng = self.clock.derive()
        incarnation = int(self.clock.wall() * 1_000_000)
        self.membership = Membership(Member(address, self._types, resources, incarnation))
        self.directory = Directory()
        self.epochs = EpochClock()
        self.swim: Swim | None = None
        self._swim_config = swim_config or SwimConfig()
        if hosting:
            self.swim = Swim(
                address,
                self._meta(),
                incarnation,
                self.clock.derive(),
                self._swim_config,
                wall=self.clock.wall,
            )
        self.sync = ViewSync()
        self._without_me: Ring | None = None
        self._settled = asyncio.Event()
        self._settled.set()  # alone, the view is settled
        self._sync_tasks: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._seeds: list[str] = []
        self._synced = asyncio.Event()
        #: set while the lease is held (cleared when a call finds it lapsed: see
        #: :meth:`until_serving`)
        self._renewed = asyncio.Event()
        self.leaving = False
        self._no_quorum_since: float | None = None
        #: loop time until which requests pass the gate unchecked (see :meth:`gate`)
        self.open_until = math.inf if not hosting else 0.0
        #: seconds a member may serve after it last heard from a majority: well below the
        #: probe period plus suspicion timeout the others need to declare it dead
        self._lease = self._swim_config.suspicion_timeout * 2 / 3
        #: loop time the lease runs out (renewed by every tick that hears from a majority)
        self.lease_end = math.inf
        self._held: list[tuple[list[Any], Route]] = []
        #: drops our activation of an actor that another one (``winner``) superseded, and
        #: sends it what it held (``Control.drop_superseded``, wired by the node)
        self.superseded: Callable[[str, str, int, str], None] = _cannot_supersede
        #: members that left gracefully, until their link is closed (``LEAVE_LINGER`` * 4)
        self._left: set[str] = set()

    def is_member(self, address: str) -> bool:
        """Whether ``address`` is a member in this node's view (this node itself included),
        or one that left gracefully a moment ago (it still places what reaches it then)."""
        members = self.membership.members
        return address == self.address or address in members or address in self._left

    def serves(self, type_name: str) -> bool:
        """Whether this node hosts actors of ``type_name``."""
        return type_name in self._types

    async def wait_settled(self) -> None:
        """Until every other member has confirmed this node's current view."""
        await self._settled.wait()

    def _meta(self) -> list[Any]:
        return [self._types, self._resources]

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, seeds: list[str], join_timeout: float) -> None:
        """Join through ``seeds`` (if any) and start the protocol loop."""
        self._seeds = [s for s in seeds if s != self.address]
        loop = asyncio.get_running_loop()
        if self.swim is not None:
            if self._seeds:
                self._send(self.swim.join(self._seeds, loop.time()))
            else:
                self._synced.set()
            self._task = loop.create_task(self._run_swim())
        else:
            self._task = loop.create_task(self._run_client())
        if self._seeds:
            try:
                async with asyncio.timeout(join_timeout):
                    await self._synced.wait()
            except TimeoutError:
                await self.close()
                raise NodeUnavailable(
                    f"no seed answered within {join_timeout:g} s (tried {', '.join(self._seeds)})"
                ) from None

    async def close(self) -> None:
        """Stop the protocol loop (without leaving: see :meth:`leave`)."""
        for task in list(self._sync_tasks):
            task.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def leave(self, grace: float, hand_off: Callable[[float], Awaitable[None]]) -> None:
        """Hand every activation to its new owner (``hand_off(grace)``: the migrator's), then
        tell everyone this node leaves."""
        self.leaving = True
        if self.swim is None:
            return
        others = [a for a in self.membership.ring.members if a != self.address]
        if others:
            await hand_off(grace)
        self._send(self.swim.leave(asyncio.get_running_loop().time()))
        if others:
            # Calls sent before the others heard of the leave still arrive: redirect them to
            # where the actors went rather than leave them unanswered. Members hear of it at
            # once; a pure client only with its next member-list refresh: while calls keep
            # coming, stay until that refresh has surely happened.
            def data_plane() -> int:
                return sum(self.messaging.received[wire.ASK : wire.ERROR + 1])

            seen = data_plane()
            await asyncio.sleep(LEAVE_LINGER)
            if data_plane() != seen:
                await asyncio.sleep(CLIENT_REFRESH + LEAVE_LINGER)

    async def _run_swim(self) -> None:
        assert self.swim is not None
        loop = asyncio.get_running_loop()
        step = self._swim_config.period / 4
        while True:
            try:
                now = loop.time()
                self._tick(now)
                if self._held and (now < self.open_until or not self.swim.has_quorum()):
                    self._release_held()
            except Exception:  # a bug here must not stop failure detection
                log.exception("membership tick failed")
            await asyncio.sleep(step)

    def _tick(self, now: float) -> None:
        swim = self.swim
        assert swim is not None
        self._send(swim.tick(now))
        self._apply_events()
        self._check_quorum(now)
        lease = self._lease
        if swim.has_quorum() and swim.majority_heard_since() + lease / 2 < now:
            # half the lease gone without news from a majority: ask them, so it renews
            self._send(swim.check_members(now - lease / 2, now))
        self._refresh_gate(now)

    # -- the request gate -----------------------------------------------------------------------

    def _refresh_gate(self, now: float) -> None:
        """Open the gate for one protocol period while this node has quorum, trusts its view
        of itself and holds its lease (a majority heard from within ``_lease`` seconds); the
        membership loop renews it every quarter period. A loop that stalled finds it closed
        on its first request and ticks before it serves anything. The lease closes it before
        the others can have declared this node dead (see ``Swim.majority_heard_since``),
        however slowly this node's own failure detection runs."""
        swim = self.swim
        if swim is None or swim.left:
            # a client, or a leaver that announced it (it hosts nothing now: it redirects)
            self.open_until = now + self._swim_config.period
        elif swim.has_quorum():
            self.lease_end = swim.majority_heard_since() + self._lease
            self.open_until = min(now + self._swim_config.period, self.lease_end)
            if now < self.lease_end and not self._renewed.is_set():
                self._renewed.set()
        else:
            self.open_until = 0.0

    def lapsed(self) -> bool:
        """Whether this member has quorum but its lease ran out (a busy or stalled loop has
        not heard from a majority lately): it serves again once a majority answers."""
        swim = self.swim
        return (
            self.hosting
            and not self.leaving
            and swim is not None
            and swim.has_quorum()
            and not swim.left
            and asyncio.get_running_loop().time() >= self.lease_end
        )

    async def until_serving(self, deadline: float) -> None:
        """Wait (until ``deadline``, loop time) for a lapsed lease to be renewed: a call made
        on this node meanwhile waits, as a request that arrives waits at the gate, instead of
        being refused. Returns at once if the lease is held or cannot come back by waiting
        (no quorum); the caller then decides as usual."""
        loop = asyncio.get_running_loop()
        self._tick(loop.time())  # ask a majority now (check_members), and renew if it can
        if not self.lapsed():
            return
        self._renewed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                while self.lapsed():
                    await self._renewed.wait()
                    self._renewed.clear()

    def gate(self, fields: list[Any], route: Route) -> bool:
        """A request arrived while the gate is closed (``open_until`` has passed): bring the
        membership up to date first. Returns True if the request was taken care of here --
        held while this node doubts whether it is still a member (released once it knows),
        or refused without quorum -- and False if it may be served as usual."""
        now = asyncio.get_running_loop().time()
        swim = self.swim
        if swim is None:
            return False
        self._tick(now)
        if now < self.open_until:
            return False
        if swim.doubting or swim.has_quorum():  # in doubt, or the lease lapsed: find out
            if len(self._held) < MAX_HELD:
                self._held.append((fields, route))
                return True
            err: ActorError = NodeUnavailable(f"{self.address} is confirming its membership")
        else:
            err = NodeUnavailable(f"{self.address} has no quorum: it serves no actors")
        if fields[wire.F_KIND] == wire.ASK:
            RemoteReply(self.messaging, route, fields[wire.F_CORR]).set_exception(err)
        else:
            self._catalog.host.tell_dropped(
                fields[wire.F_TYPE], fields[wire.F_KEY], fields[wire.F_METHOD], err
            )
        return True

    def _release_held(self) -> None:
        """This node knows again whether it is a member: serve (or redirect, or refuse) what
        arrived meanwhile, in order of arrival."""
        held, self._held = self._held, []
        for fields, route in held:
            self.release(fields, route)

    async def _run_client(self) -> None:
        loop = asyncio.get_running_loop()
        candidates = list(self._seeds)
        while True:
            members = [a for a in self.membership.members if a != self.address] or candidates
            for peer in self._rng.sample(members, len(members)):
                env = wire.Envelope(wire.CONTROL, 0, "", method="members")
                corr, fut = self.messaging.request(peer, env, loop)
                try:
                    async with asyncio.timeout(CLIENT_REFRESH):
                        answer = await fut
                except (TimeoutError, ActorError):
                    continue
                finally:
                    self.messaging.forget(corr)
                self._replace_members(answer)
                self._synced.set()
                break
            await asyncio.sleep(CLIENT_REFRESH)

    def _replace_members(self, answer: Any) -> None:
        if not isinstance(answer, list):
            raise ValueError("members answer must be a list")
        fresh = {m.address: m for m in (Member.from_wire(w) for w in answer)}
        old_ring = self.membership.ring.copy()
        for address in list(self.membership.members):
            if address != self.address and address not in fresh:
                # a client cannot tell a leave from a death: let a leaver answer what it has
                self._member_gone(address, graceful=True)
        self.membership.merge(fresh.values())
        self._ring_changed(old_ring)

    def _check_quorum(self, now: float) -> None:
        """Without quorum this node serves nothing at once; once it has been cut off for as
        long as the majority needs to remove it, it also drops its activations, which the
        majority will have reactivated (see the partition rule above). A brief loss of quorum
        that heals before that keeps them."""
        swim = self.swim
        assert swim is not None
        if swim.has_quorum() or swim.doubting or self.leaving:
            # In doubt (after a stall of our own) we learn soon enough whether the cluster
            # removed us: then SWIM says self_dead; until then nobody took anything over.
            self._no_quorum_since = None
            return
        if self._no_quorum_since is None:
            self._no_quorum_since = now
            log.warning("%s lost quorum: it serves no actors until it is back", self.address)
        elif (
            now - self._no_quorum_since >= swim.suspicion_timeout
            and self._catalog.count
            # only if the members we cannot reach could be a majority without us: in a
            # cluster of two, nobody can take our actors over while we are cut off
            and swim.view_size - swim.alive_count > swim.view_size // 2
        ):
            log.warning("%s lost quorum: dropping its activations", self.address)
            self._catalog.drop_all(f"{self.address} has no quorum")

    def _send(self, out: list[tuple[str, Any]]) -> None:
        for address, message in out:
            env = wire.Envelope(wire.CONTROL, 0, self.address, method="swim", body=message)
            self.messaging.post(address, env)

    # -- membership events ----------------------------------------------------------------------

    def _apply_events(self) -> None:
        assert self.swim is not None
        events = self.swim.drain_events()
        if not events:
            return
        old_ring = self.membership.ring.copy()
        for kind, address, meta in events:
            if kind == "alive":
                record = self.swim.record(address)
                incarnation = record[0] if record is not None else 0
                try:
                    types, resources = meta
                    member = Member(address, types, resources, incarnation)
                except (TypeError, ValueError):
                    log.warning("member %s sent bad metadata %r", address, meta)
                    continue
                self.membership.merge([member])
            elif kind in ("dead", "left"):
                self._member_gone(address, graceful=kind == "left")
            elif kind == "doubt":
                log.warning("%s stalled: holding requests until the cluster confirms it", address)
            elif kind == "trusted":
                log.warning("%s is still a member: serving again", address)
            elif kind == "self_dead":
                if len(self.membership.members) <= 1:
                    continue  # alone: nobody can have taken our actors over
                log.warning("%s was declared dead by the cluster: dropping activations", address)
                self._catalog.drop_all("this node was declared dead by the cluster")
                self.directory = Directory()
                self._locations.clear()
                self._begin_sync()  # whatever the ring looks like, trust it only once confirmed
        self._synced.set()
        self._ring_changed(old_ring)

    def _member_gone(self, address: str, graceful: bool = False) -> None:
        """A member died or left. A leaver still answers what it was sent before it left
        (and redirects stragglers for ``LEAVE_LINGER``): its link stays open a little longer."""
        self.membership.remove(address)
        self.directory.purge_host(address)
        self._locations.drop_host(address)
        if graceful:
            self._left.add(address)
            asyncio.get_running_loop().call_later(LEAVE_LINGER * 4, self._link_gone, address)
        else:
            self._link_gone(address)

    def _link_gone(self, address: str) -> None:
        self._left.discard(address)
        if address in self.membership.members:
            return  # it came back meanwhile
        self.messaging.on_peer_down(address)
        self.messaging.transport.forget(address)

    def _ring_changed(self, old_ring: Ring) -> None:
        ring = self.membership.ring
        if ring.members == old_ring.members:
            return
        self._locations.clear()
        self._without_me = None
        log.info("%s: ring is now %s", self.address, list(ring.members))
        if self.hosting:
            # Entries for keys we no longer own are the new owners' business now: they learn
            # them from the hosts themselves, in their own view-sync rounds.
            self.directory.take_unowned(self.owns)
            self._begin_sync()

    # -- view synchronisation (see router.directory) --------------------------------------------

    @property
    def settled(self) -> bool:
        """Whether every other member has confirmed this node's current view."""
        return self._settled.is_set()

    def _begin_sync(self) -> None:
        """A new view: ask every other member to merge it and tell what it hosts."""
        others = [a for a in self.membership.ring.members if a != self.address]
        number = self.sync.begin(others)
        if self.sync.settled:
            self._settled.set()
            return
        self._settled.clear()
        loop = asyncio.get_running_loop()
        for peer in others:
            task = loop.create_task(self._confirm(number, peer))
            self._sync_tasks.add(task)
            task.add_done_callback(self._sync_tasks.discard)

    def _view_records(self) -> list[list[Any]]:
        """Our view as SWIM records (for a peer to merge)."""
        if self.swim is None:
            return []
        return [
            [address, incarnation, int(status), meta]
            for address, (incarnation, status, meta) in self.swim.members().items()
        ]

    async def _confirm(self, number: int, peer: str) -> None:
        """Send round ``number``'s view to ``peer`` until it confirms it (or the round ends)."""
        while self.sync.is_current(number, peer):
            if peer not in self.membership.members:
                return  # removed: the next round no longer waits for it
            try:
                answer = await self._request(peer, "vsync", self._view_records(), SYNC_TIMEOUT)
            except (ActorError, TimeoutError) as err:
                log.debug("%s did not confirm view round %d: %s", peer, number, err)
                answer = None
            if not self.sync.is_current(number, peer):
                return
            if isinstance(answer, list):
                self._learn_hosted(peer, answer)
                if self.sync.confirmed(number, peer):
                    log.info("%s: view settled (round %d)", self.address, number)
                    self._settled.set()
                return
            await asyncio.sleep(SYNC_RETRY)

    def _learn_hosted(self, host: str, entries: list[Any]) -> None:
        """A member's answer to our view: the activations it hosts and does not own. Those we
        own become directory entries (exceptions)."""
        for item in entries:
            if not (
                isinstance(item, list)
                and len(item) == 3
                and isinstance(item[0], str)
                and isinstance(item[1], str)
                and isinstance(item[2], int)
            ):
                raise ValueError("a hosted entry is [type_name, key, epoch]")
            type_name, key, epoch = item
            if epoch != MOVING:
                self.observe_epoch(epoch)
            if not self.owns(type_name, key):
                continue
            if epoch == MOVING:
                # on its way to another host, which reports it (or the move fails and the
                # mover registers it again): a placeholder, so we activate no second one
                if self.directory.lookup(type_name, key) is None:
                    self.directory.register(type_name, key, host, MOVING)
            else:
                self.register(type_name, key, host, epoch)

    def _hosted_elsewhere_owned(self) -> list[list[Any]]:
        """Our activations whose owner is another member (the answer to a view-sync)."""
        out: list[list[Any]] = []
        for act in self._catalog:
            if act.type.stateless:
                continue
            owner = self._owner_or_none(act.type.name, act.key)
            if owner is not None and owner != self.address:
                epoch = MOVING if act.status == MIGRATING else act.epoch
                out.append([act.type.name, act.key, epoch])
        return out

    def register(self, type_name: str, key: str, host: str, epoch: int) -> str:
        """Record ``host``'s activation in our directory partition, unless the actor already
        lives elsewhere: then the later registration loses and its host is told to drop it
        (fencing). Returns the winner's host.

        Our own activation loses to a newer one (a higher epoch): that was activated after
        ours, which only a view without us can have done -- we were removed (cut off, or
        stalled) and have not heard it yet, though we may hear from the others again (after
        a heal, first what waited out the cut in their buffers). Ours is the stale duplicate."""
        act = self._catalog.lookup(type_name, key)
        winner: str | None = None
        if (
            act is not None
            and not isinstance(act, list)
            and act.status != MIGRATING  # the registering host is where it is going
            and host != self.address
        ):
            if act.epoch >= epoch:
                winner = self.address
            else:
                self.superseded(type_name, key, act.epoch, host)
        if winner is None:
            winner = self.directory.register(type_name, key, host, epoch).host
        if winner != host:
            log.warning(
                "%s/%s registered by %s but lives on %s: superseded", type_name, key, host, winner
            )
            self._post(host, "supersede", [type_name, key, epoch, winner])
        return winner

    # -- placement ------------------------------------------------------------------------------

    def serving(self) -> bool:
        """Whether this node may host new activations now: a member that is not leaving,
        with quorum, holding its lease."""
        return not self.leaving and self.may_serve()

    def may_serve(self) -> bool:
        """Whether this node may run turns of the activations it has (leaving or not): with
        quorum and its lease held, the majority cannot have activated them elsewhere."""
        if not self.hosting:
            return False
        swim = self.swim
        return swim is None or (
            swim.has_quorum() and asyncio.get_running_loop().time() < self.lease_end
        )

    def owner(self, type_name: str, key: str) -> str:
        """The ring owner of an actor; ``UnknownActorType`` if no member serves its type, or
        none of those that do offers the resources it needs (the message says which)."""
        atype = self._known.get(type_name)
        needs = atype.resources if atype is not None else None
        try:
            return self.membership.owner(type_name, key, needs)
        except LookupError:
            if needs and self.membership.serves(type_name):
                shown = {k: int(v) if v.is_integer() else v for k, v in needs.items()}
                raise UnknownActorType(
                    f"no member offers resources {shown} for actor type {type_name!r}"
                ) from None
            raise UnknownActorType(f"no member serves actor type {type_name!r}") from None

    def _owner_or_none(self, type_name: str, key: str) -> str | None:
        try:
            return self.owner(type_name, key)
        except UnknownActorType:
            return None

    def owns(self, type_name: str, key: str) -> bool:
        """Whether this node is the ring owner of the actor."""
        return self._owner_or_none(type_name, key) == self.address

    def successor(self, atype: ActorType, key: str) -> str | None:
        """The owner of the actor on the ring without this node (where it goes when we
        leave), or None if no other member can host it. The ring without us is built once
        per view: a leave asks this for every activation."""
        ring = self._without_me
        if ring is None:
            ring = self._without_me = self.membership.ring.copy()
            ring.discard(self.address)
        members = self.membership.members
        try:
            return ring.owner_of(
                atype.name,
                key,
                lambda a: a in members and members[a].can_host(atype.name, atype.resources),
            )
        except LookupError:
            return None

    def activated(self, act: Activation) -> None:
        """A new activation here: if this node is not its owner, register it there."""
        if not self.hosting or act.type.stateless:
            return
        owner = self._owner_or_none(act.type.name, act.key)
        if owner is not None and owner != self.address:
            self._post(owner, "register", [act.type.name, act.key, self.address, act.epoch])

    def deactivated(self, act: Activation) -> None:
        """An activation here ended: if another node owns it, drop its directory entry."""
        if not self.hosting or act.type.stateless:
            return
        owner = self._owner_or_none(act.type.name, act.key)
        if owner is not None and owner != self.address:
            self._post(owner, "unregister", [act.type.name, act.key, self.address, act.epoch])

    def not_here(self, type_name: str, key: str, owner: str) -> None:
        """Tell ``owner`` we do not host the actor (a redirect sent a call here for it), with
        our epoch clock's reading: an entry naming us with an older epoch is stale, one with a
        newer epoch is an activation we made since (and is kept)."""
        self._post(owner, "not_here", [type_name, key, self.epochs.last])

    def new_epoch(self) -> int:
        """A fencing token for a new activation on this node."""
        return self.epochs.issue(self.clock.wall())

    def observe_epoch(self, epoch: int) -> None:
        """An epoch from another node: later ones here pass it. Raises ``ValueError`` (the
        message is refused) for one outside the range ``EpochClock.observe`` accepts."""
        self.epochs.observe(epoch, self.clock.wall())

    # -- control messages -----------------------------------------------------------------------

    def post(self, peer: str, op: str, body: Any) -> None:
        """Send a control message that needs no answer."""
        self._post(peer, op, body)

    def _post(self, peer: str, op: str, body: Any) -> None:
        self.messaging.post(
            peer, wire.Envelope(wire.CONTROL, 0, self.address, method=op, body=body)
        )

    # -- what peers send the membership and the directory (see ``runtime.control``) --------

    def on_swim(self, sender: str, body: Any) -> None:
        """A SWIM message from ``sender``."""
        if self.swim is None:
            raise ValueError("a client takes no part in membership")
        now = asyncio.get_running_loop().time()
        self._send(self.swim.receive(sender, body, now))
        self._apply_events()

    def on_register(self, body: Any) -> str:
        """A host registers its activation (``[type, key, host, epoch(, previous)]``; with
        ``previous``, a migration: the entry moves). Returns the winner's host."""
        if isinstance(body, list) and len(body) == 5:
            type_name, key, host, epoch, previous = actor_body(body, 5)
        else:
            type_name, key, host, epoch = actor_body(body, 4)
            previous = None
        if not isinstance(host, str) or not _is_int(epoch):
            raise ValueError("register body is [type_name, key, host, epoch(, previous)]")
        self.observe_epoch(epoch)
        if previous is not None:
            self.directory.unregister(type_name, key, str(previous))
        return self.register(type_name, key, host, epoch)

    def on_unregister(self, body: Any) -> None:
        """A host's activation ended (``[type, key, host, epoch]``)."""
        type_name, key, host, epoch = actor_body(body, 4)
        if not isinstance(host, str) or not _is_int(epoch):
            raise ValueError("unregister body is [type_name, key, host, epoch]")
        self.observe_epoch(epoch)
        self.directory.unregister(type_name, key, host, epoch)

    def on_vsync(self, sender: str, records: Any) -> list[list[Any]] | None:
        """A peer's view (its SWIM records): merge it before answering, so that from here on
        we do not activate what it owns in it (see ``router.directory``); answer with the
        activations we host and it owns -- only as a member that may serve: one cut off from
        the majority (or in doubt) may have been removed, and its activations are not to be
        counted on."""
        if self.swim is None:
            raise ValueError("a client takes no part in membership")
        now = asyncio.get_running_loop().time()
        self._send(self.swim.receive(sender, ["sync", records, False], now))
        self._apply_events()
        if sender in self.membership.members and self.may_serve():
            return self._hosted_elsewhere_owned()
        return None

    def on_not_here(self, sender: str, body: Any) -> None:
        """``sender`` does not host the actor our entry names it for: drop an entry older
        than its epoch clock (epoch 0 is a claim, recorded before the claimant activates:
        it stays)."""
        type_name, key, epoch = actor_body(body, 3)
        if not _is_int(epoch):
            raise ValueError("not_here body is [type_name, key, epoch]")
        entry = self.directory.lookup(type_name, key)
        if entry is not None and entry.host == sender and 0 != entry.epoch <= epoch:
            self.directory.unregister(type_name, key, sender)

    def hosted_here(self, type_name: str, key: str) -> str | None:
        """Where this node knows the actor lives: here, or the host its directory names."""
        if self._catalog.lookup(type_name, key) is not None:
            return self.address
        entry = self.directory.lookup(type_name, key)
        return entry.host if entry is not None else None

    def members_wire(self) -> list[Any]:
        """The members this node knows, as ``Member`` wire records (a client's refresh)."""
        if self.swim is None:
            return self.membership.to_wire()
        out = []
        for address, (incarnation, status, meta) in self.swim.members().items():
            if status == Status.ALIVE or status == Status.SUSPECT:
                try:
                    types, resources = meta
                except (TypeError, ValueError):
                    continue
                out.append(Member(address, types, resources, incarnation).to_wire())
        return out


def _cannot_supersede(type_name: str, key: str, epoch: int, winner: str) -> None:
    raise RuntimeError("no control handlers wired to drop a superseded activation")


def _refuse(fields: list[Any], route: Route) -> None:
    raise RuntimeError("no inbound dispatch wired to release held requests")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def actor_body(body: Any, n: int) -> list[Any]:
    """``body`` checked as a list of ``n`` items starting with a type name and a key."""
    if not (isinstance(body, list) and len(body) == n):
        raise ValueError(f"expected a list of {n} items")
    if not isinstance(body[0], str) or not isinstance(body[1], str):
        raise ValueError("type_name and key must be str")
    return body
