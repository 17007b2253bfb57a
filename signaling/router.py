"""The node's router: offers waiting calls to agents and keeps everyone told.

A background loop wakes on every change (a call queued, an agent ready, a call ended)
and once per ``routing.tick_s``; each pass expires unanswered offers (the agent is set
away as "missed"), ends timed wrap-ups, routes (``CallQueue.route``), offers callbacks
to calls that waited too long and pushes each waiting kiosk its position and estimated
wait. The agent states of this node's agents are changed only here, so the cache in
``Presence.agent_states`` is what the database says.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from signaling.presence import Connection, Presence
from vwindow.config import RoutingConfig
from vwindow.errors import InvalidStateError
from vwindow.models import Role, utcnow
from vwindow.nodes import BEATS_PER_TIMEOUT, Beat
from vwindow.queue import Answered, CallQueue, Offer, QueueInfo
from vwindow.views import CallView

logger = logging.getLogger(__name__)

POSITION_REFRESH_S = 10.0
"""Kiosks get their estimate again this often even when nothing moved (it ages)."""
POSITION_INTERVAL_S = 0.5
"""Positions are worked out at most this often (a busy queue wakes the router a lot)."""


def _dump(view: CallView) -> dict[str, Any]:
    return view.model_dump(mode="json")


class Router:
    def __init__(self, queue: CallQueue, presence: Presence,
                 on_change: Callable[[], None],
                 on_beat: Callable[[Beat], Awaitable[None]] | None = None) -> None:
        self.queue = queue
        self.presence = presence
        self.on_change = on_change
        self.on_beat = on_beat
        """Told of every beat, after the router's own part (calls lost, revival)."""
        self._wake = asyncio.Event()
        self._announce = False  # tell the other nodes after this node's next pass
        self._task: asyncio.Task[None] | None = None
        self._beater: asyncio.Task[None] | None = None
        self._readying: dict[int, list[tuple[bool, asyncio.Future[str]]]] = {}
        self._readier: asyncio.Task[None] | None = None  # makes the batches of ``_ready``
        self._rung: set[tuple[int, int]] = set()  # ring-all: (call, agent) already told
        self._told: dict[int, tuple[int, int | None, bool]] = {}  # call -> last position push
        self._told_at = 0.0
        self._positions_at = 0.0
        self._chores_at = 0.0
        self._offered: dict[int, int] = {}  # agent -> the call last offered to it alone
        # When this node's offers run out and its agents' wrap-ups end (monotonic): the
        # chores query for them only once one is due. Every offer and timed wrap-up of
        # this node's agents is made here, and a restarted node's states start offline.
        self._offers_due: dict[int, float] = {}
        self._wraps_due: dict[int, float] = {}

    @property
    def config(self) -> RoutingConfig:
        return self.queue.config

    async def start(self) -> None:
        await self.queue.start()
        self._task = asyncio.create_task(self._loop(), name="router")
        self._beater = asyncio.create_task(self._beat_loop(), name="heartbeat")

    async def stop(self) -> None:
        for task in (self._beater, self._task, self._readier):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        self._task = self._readier = self._beater = None

    def wake(self, *, announce: bool = True) -> None:
        """Route soon; ``announce``: a call became available to route (queued, declined,
        back from an offer), so the other nodes, whose agents may take it, route too.
        A change only this node's agents can use (one of them became free) is not
        announced: the other nodes' passes would find nothing new."""
        self._announce = self._announce or announce
        self._wake.set()

    async def on_event(self, event: dict[str, Any]) -> None:
        if event.get("k") == "wake":
            self.wake(announce=False)
        elif event.get("k") == "call_ended" and isinstance(event.get("agent"), int):
            agent_id = event["agent"]
            if self.presence.connected(f"agent:{agent_id}"):
                await self.call_ended(agent_id, expert=bool(event.get("expert")))

    # -- agent states ------------------------------------------------------------------

    def state_of(self, agent_id: int) -> str:
        return self.presence.agent_states.get(agent_id, "offline")

    async def set_state(self, agent_id: int, state: str, reason: str | None = None, *,
                        force: bool = False) -> str:
        """Change an agent's state, tell the agent's consoles and re-route."""
        current = self.state_of(agent_id)
        if current == "ringing" and state == "ready":
            return current  # ready already; the offer is answered by accept or decline
        if state == "ready":
            return await self._ready(agent_id, force=force)
        new, dropped = await self.queue.set_state(agent_id, state, reason, force=force)
        await self._publish_state(agent_id, new, reason if new == "away" else None)
        if dropped is not None:
            await self._tell_agent(agent_id, {"type": "call.offer_withdrawn",
                                              "call_id": dropped, "reason": "state"})
        self.wake(announce=dropped is not None)
        return new

    async def _ready(self, agent_id: int, *, force: bool = False) -> str:
        """The agent is ready: rung at once if a waiting call suits them (``queue.ready``
        offers it in the same transaction), so the offer does not wait for a pass.
        Agents readying while a batch is being made go together in the next."""
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._readying.setdefault(agent_id, []).append((force, done))
        if self._readier is None or self._readier.done():
            self._readier = asyncio.create_task(self._ready_batches(), name="readier")
        return await done

    async def _ready_batches(self) -> None:
        while self._readying:
            batch, self._readying = self._readying, {}
            try:
                states = await self._ready_batch(
                    {agent_id: any(force for force, _ in asked)
                     for agent_id, asked in batch.items()})
            except asyncio.CancelledError:  # the node stops: nobody waits on
                for asked in [*batch.values(), *self._readying.values()]:
                    for _, done in asked:
                        done.cancel()
                raise
            except Exception as exc:  # each asker's request gets the error
                for asked in batch.values():
                    for _, done in asked:
                        if not done.done():
                            done.set_exception(exc)
                continue
            for agent_id, asked in batch.items():
                for _, done in asked:
                    if not done.done():
                        done.set_result(states[agent_id])

    async def _ready_batch(self, agents: dict[int, bool]) -> dict[int, str]:
        # Other ready agents of this node may have waited longer for a call: then the
        # batch joins a pass over them all, so the longest idle still comes first.
        others = any(state == "ready" and agent_id not in agents
                     for agent_id, state in self.presence.agent_states.items())
        readying = await self.queue.ready(agents, others=others)
        ringing = {offer.agent_id for offer in readying.offers
                   if offer.expires_at is not None}
        for agent_id, state in readying.states.items():
            # "ringing" without an offer here: a pass offered a call meanwhile and tells.
            if agent_id not in ringing and state != "ringing":
                await self._publish_state(agent_id, state, None)
        await self._rang(readying.offers)
        if readying.taken:
            self.wake(announce=False)
        return readying.states

    async def _publish_state(self, agent_id: int, state: str, reason: str | None,
                             wrap_s: float | None = None) -> None:
        self.presence.agent_states[agent_id] = state
        push: dict[str, Any] = {"type": "agent.state", "state": state}
        if reason:
            push["reason"] = reason
        if wrap_s is not None:
            push["wrap_up_s"] = wrap_s
        await self._tell_agent(agent_id, push)
        self.on_change()

    async def _tell_agent(self, agent_id: int, message: dict[str, Any]) -> None:
        await self.presence.send_to(f"agent:{agent_id}", message)

    async def agent_connected(self, conn: Connection) -> None:
        """A console connected: it learns its state and, if ready, what it may take."""
        agent_id = int(conn.principal.subject)
        state = self.state_of(agent_id)
        await conn.send({"type": "agent.state", "state": state})
        if state == "ringing":
            # Back while an offer stands (a reload, a dropped socket): show it again.
            view = await self.queue.offered_to(agent_id)
            if view is not None:
                await conn.send({"type": "call.ringing", "call": _dump(view),
                                 "timeout_s": self.config.offer_timeout_s})
        if self.queue.rules.strategy == "ring_all" and state == "ready":
            self._rung = {pair for pair in self._rung if pair[1] != agent_id}
            self.wake(announce=False)

    async def agent_gone(self, agent_id: int) -> None:
        """No console left for the agent (after the grace period)."""
        if self.state_of(agent_id) not in ("in_call", "offline"):
            await self.set_state(agent_id, "offline")
            logger.info("agent %s went offline (no connection)", agent_id)

    async def call_ended(self, agent_id: int, *, expert: bool = False) -> None:
        """The agent's call ended (or an expert left it): wrap up, or straight back.

        The node holding the agent's console does it: the state is that node's to change.
        """
        connected = self.presence.connected(f"agent:{agent_id}")
        if not connected and self.state_of(agent_id) == "offline":
            if await self.presence.bus.publish({"k": "call_ended", "agent": agent_id,
                                                "expert": expert}):
                return
        if connected and (expert or self.config.wrap_up_s <= 0):
            await self._ready(agent_id, force=True)  # straight back, and maybe rung at once
            return
        # Wrap-up or offline: nobody this node could offer a call to was freed.
        wrap = self.config.wrap_up_s if connected else None
        state, _ = await self.queue.set_state(agent_id, "wrap_up" if wrap else "offline",
                                              force=True, wrap_s=wrap)
        if wrap:
            self._wraps_due[agent_id] = time.monotonic() + wrap
        await self._publish_state(agent_id, state, None, wrap)

    async def in_call(self, agent_id: int) -> None:
        """The agent is in a call (answered, joined as expert, or back after a restart)."""
        if self.state_of(agent_id) != "in_call":
            await self.queue.set_state(agent_id, "in_call", force=True)
            await self._publish_state(agent_id, "in_call", None)

    # -- calls -------------------------------------------------------------------------

    async def decline(self, agent_id: int, call_id: int) -> None:
        await self.queue.decline(agent_id, call_id)
        self._rung.discard((call_id, agent_id))
        if self.state_of(agent_id) == "ringing":
            await self._publish_state(agent_id, "ready", None)
        self.wake()

    async def claim(self, agent_id: int, call_id: int) -> Answered:
        if self.state_of(agent_id) == "in_call":
            raise InvalidStateError("you are already in a call; end it first")
        answered = await self.queue.claim(agent_id, call_id)
        self.presence.agent_states[agent_id] = "in_call"
        await self._tell_agent(agent_id, {"type": "agent.state", "state": "in_call"})
        self._forget(call_id)
        self.on_change()
        self.wake(announce=False)
        return answered

    async def offer_ended(self, agent_id: int) -> None:
        """The call offered to the agent was cancelled: the agent is ready again."""
        if self.state_of(agent_id) == "ringing":
            await self._publish_state(agent_id, "ready", None)

    def call_left_queue(self, call_id: int) -> None:
        self._forget(call_id)
        self.wake(announce=False)

    def _forget(self, call_id: int) -> None:
        self._rung = {pair for pair in self._rung if pair[0] != call_id}
        self._told.pop(call_id, None)

    # -- the loop ----------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.config.tick_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.run_once()
            except Exception:
                logger.exception("routing pass failed; retrying next tick")
            if self._announce:
                self._announce = False
                await self.presence.bus.publish({"k": "wake"})

    async def run_once(self) -> None:
        """One routing pass (the loop's body; tests may call it directly)."""
        now = time.monotonic()
        # Whatever woke the pass is routed first; the chores after it (timeouts,
        # wrap-ups, callbacks) do not delay an offer, and what they free is routed then.
        await self._route()
        if now - self._chores_at < min(self.config.tick_s, 0.5):
            return
        self._chores_at = now
        freed = False
        states = self.presence.agent_states
        expired = _due(self._offers_due, now, states, "ringing")
        for withdrawn in await self.queue.expire_offers() if expired else []:
            freed = True
            self._announce = True  # the call is back in the queue for everyone
            await self._tell_agent(withdrawn.agent_id, {
                "type": "call.offer_withdrawn", "call_id": withdrawn.call_id,
                "reason": withdrawn.reason})
            await self._publish_state(withdrawn.agent_id, "away", "missed")
        ended = _due(self._wraps_due, now, states, "wrap_up")
        connected = {int(c.principal.subject) for c in self.presence.by_role(Role.AGENT)}
        for agent_id in await self.queue.finish_wrap_ups(connected) if ended else []:
            freed = True
            await self._publish_state(agent_id, "ready", None)
        if freed:
            await self._route()
        for call_id, kiosk_id in await self.queue.due_callback_offers():
            await self.presence.deliver(f"kiosk:{kiosk_id}", {
                "type": "queue.callback_offer", "call_id": call_id,
                "waited_s": self.config.callback_after_s})
        if time.monotonic() - self._positions_at >= POSITION_INTERVAL_S:
            self._positions_at = time.monotonic()
            await self._push_positions(
                force=time.monotonic() - self._told_at >= POSITION_REFRESH_S)

    async def _route(self) -> None:
        # Only this node's ready agents are routed here, and their states are all in the
        # cache: a pass with none of them (most wakes: a claim, a tick) reads nothing.
        if any(state == "ready" for state in self.presence.agent_states.values()):
            offers, taken = await self.queue.route()
            await self._rang(offers)
            if taken:  # another node took calls planned here, after a few tries
                self.wake(announce=False)

    async def _rang(self, offers: list[Offer]) -> None:
        """Ring each offer's agent; then tell the kiosks of calls offered to one agent."""
        connecting: list[tuple[str, dict[str, Any]]] = []
        for offer in offers:
            await self._ring(offer)
            if offer.expires_at is not None:
                # One agent rings: the kiosk and that agent connect their media now, held
                # apart by the hub until the answer (``Switchboard.join_media``). After
                # every console of this pass rings; one bus event for kiosks elsewhere.
                connecting.append((f"kiosk:{offer.kiosk_id}", {
                    "type": "call.connecting", "call_id": offer.call.call_id,
                    "agent_id": offer.agent_id}))
        if connecting:
            await self.presence.deliver_many(connecting)

    async def _beat_loop(self) -> None:
        """Beats on a task of their own: a beat waits for no routing pass, no chore."""
        interval = self.config.node_timeout_s / BEATS_PER_TIMEOUT
        while True:
            started = time.monotonic()
            try:
                await self.beat()
            except Exception:
                logger.exception("heartbeat failed; trying again")
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def beat(self) -> Beat:
        """One heartbeat (the beat task's body; tests may call it directly)."""
        beat = await self.queue.heartbeat()
        if beat.lost:
            logger.warning("calls %s queued again: their media hub's node is gone %s",
                           [lost.call_id for lost in beat.lost], beat.dead)
        if beat.revived:
            await self._restore_states()
        if self.on_beat is not None:
            await self.on_beat(beat)
        if beat.lost or beat.revived:
            self.wake()  # another pass, here and on the other nodes
        return beat

    async def _restore_states(self) -> None:
        """After this node was wrongly declared dead: its agents' states, as they are.

        The node that declared it dead set them offline and withdrew their offers: a
        ringing console stops ringing and is ready again. Agents in a call the other
        node queued again are the switchboard's (``on_beat``)."""
        for agent_id, state in list(self.presence.agent_states.items()):
            if state == "ringing":
                call_id = self._offered.pop(agent_id, None)
                if call_id is not None:
                    await self._tell_agent(agent_id, {"type": "call.offer_withdrawn",
                                                      "call_id": call_id,
                                                      "reason": "withdrawn"})
                self._offers_due.pop(agent_id, None)
                state = "ready"
                await self._publish_state(agent_id, state, None)
            # Not forced: an agent whose accept went through meanwhile stays in its call.
            if state in ("ready", "away"):
                await self.queue.set_state(agent_id, state)
            elif state == "wrap_up":  # what is left of it (it ends in the chores)
                due = self._wraps_due.get(agent_id)
                await self.queue.set_state(
                    agent_id, state,
                    wrap_s=None if due is None else max(0.0, due - time.monotonic()))

    async def _ring(self, offer: Offer) -> None:
        pair = (offer.call.call_id, offer.agent_id)
        if offer.expires_at is None:  # ring-all: tell each agent once per call
            if pair in self._rung:
                return
            self._rung.add(pair)
        else:
            self._offers_due[offer.agent_id] = time.monotonic() + (
                offer.expires_at - utcnow()).total_seconds()
            self._offered[offer.agent_id] = offer.call.call_id
            await self._publish_state(offer.agent_id, "ringing", None)
        message: dict[str, Any] = {"type": "call.ringing", "call": _dump(offer.call)}
        if offer.expires_at is not None:
            message["timeout_s"] = self.config.offer_timeout_s
            message["expires_at"] = offer.expires_at.isoformat()
        await self._tell_agent(offer.agent_id, message)
        logger.info("call %s offered to agent %s", offer.call.call_id, offer.agent_id)

    async def _push_positions(self, *, force: bool) -> None:
        """Tell this node's waiting kiosks their place and estimate, when it changed."""
        here = {int(c.principal.subject) for c in self.presence.by_role(Role.KIOSK)}
        infos = await self.queue.queue_info(here) if here else []
        live = {info.call_id for info in infos}
        for call_id in [c for c in self._told if c not in live]:
            del self._told[call_id]
        for info in infos:
            told = (info.position, _bucket(info.eta_s), info.callback)
            if not force and self._told.get(info.call_id) == told:
                continue
            self._told[info.call_id] = told
            await self.presence.send_to(f"kiosk:{info.kiosk_id}", position_message(info))
        if force:
            self._told_at = time.monotonic()


def position_message(info: QueueInfo) -> dict[str, Any]:
    return {"type": "queue.position", "call_id": info.call_id, "position": info.position,
            "eta_s": None if info.eta_s is None else round(info.eta_s),
            "callback": info.callback}


def _bucket(eta: float | None) -> int | None:
    """Estimates change every pass; kiosks are told when the shown minute changes."""
    return None if eta is None else int(eta // 30)


def _due(deadlines: dict[int, float], now: float, states: dict[int, str], state: str
         ) -> bool:
    """Whether an agent's deadline has come. Those past it and no longer in ``state``
    are forgotten; one still in it (its row was locked by a request meanwhile, say)
    keeps the chore's query running until it is not."""
    passed = [agent for agent, at in deadlines.items() if at <= now]
    for agent in passed:
        if states.get(agent) != state:
            del deadlines[agent]
    return any(agent in deadlines for agent in passed)
