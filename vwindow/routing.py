"""Routing rules: which agent may take which waiting call, in what order, and how long.

Pure functions over plain snapshots, so every rule is table-tested without a server:
eligibility (skill, dialect, level and county pairing with overflow to the city, one
live call per agent), the order calls are served in (priority, then time waited), the
strategies that pick an agent (longest-idle, round-robin, ring-all), and the wait
estimate a kiosk shows. The database side (locking, offers) is ``vwindow.queue``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

Strategy = Literal["longest_idle", "round_robin", "ring_all"]
STRATEGIES: tuple[Strategy, ...] = ("longest_idle", "round_robin", "ring_all")

MANDARIN = "普通话"
ANY_SKILL = "*"

# Agent states: who the router may offer a call to ("ready"), who is busy, who is not there.
AGENT_STATES = ("offline", "ready", "ringing", "in_call", "wrap_up", "away")
STAFFED_STATES = frozenset({"ready", "ringing", "in_call", "wrap_up"})


@dataclass(frozen=True)
class RoutingRules:
    """The knobs of ``[routing]`` that decide eligibility and order."""

    strategy: Strategy = "longest_idle"
    overflow_s: float = 60.0
    """A township's call waits this long for its paired county before city agents may take it."""
    dialect_overflow_s: float = 120.0
    """After this wait a call asking for a dialect goes to any agent (in Mandarin)."""
    elderly_age: int = 65
    elderly_boost: int = 10
    appointment_boost: int = 5
    callback_boost: int = 0


@dataclass(frozen=True)
class WaitingCall:
    id: int
    category: str
    county: str
    """County the calling township belongs to: its paired county agents come first."""
    queued_at: datetime
    dialect: str | None = None
    priority: int = 0
    excluded: frozenset[int] = frozenset()
    """Agents who declined this call: it goes to someone else."""
    reserved_for: int | None = None
    """Transferred to this agent by name: nobody else is offered it meanwhile."""


@dataclass(frozen=True)
class AgentSlot:
    id: int
    state: str
    level: Literal["county", "city"] | str
    county: str | None
    skills: frozenset[str]
    dialects: frozenset[str]
    idle_since: datetime
    """When the agent last became ready (longest-idle picks the oldest)."""
    last_offer_at: datetime | None = None
    """When the agent was last offered a call (round-robin picks the oldest)."""
    live_calls: int = 0


@dataclass
class Plan:
    """Offers to make: one agent per call (or every eligible agent, for ring-all)."""

    offers: list[tuple[int, int]] = field(default_factory=list)  # (call id, agent id)


def waited_s(call: WaitingCall, now: datetime) -> float:
    return max(0.0, (now - call.queued_at).total_seconds())


def priority_for(birth_date: date | None, today: date, *, appointment: bool,
                 callback: bool, rules: RoutingRules) -> int:
    """Priority points of a new call: elderly caller, appointment holder, callback."""
    points = 0
    if birth_date is not None and is_elderly(birth_date, today, rules):
        points += rules.elderly_boost
    if appointment:
        points += rules.appointment_boost
    if callback:
        points += rules.callback_boost
    return points


def is_elderly(birth_date: date, today: date, rules: RoutingRules) -> bool:
    return age_on(birth_date, today) >= rules.elderly_age


def age_on(birth_date: date, today: date) -> int:
    years = today.year - birth_date.year
    if (today.month, today.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


def has_skill(agent: AgentSlot, category: str) -> bool:
    return ANY_SKILL in agent.skills or category in agent.skills


def speaks(agent: AgentSlot, call: WaitingCall, now: datetime, rules: RoutingRules) -> bool:
    if not call.dialect or call.dialect == MANDARIN:
        return True
    if call.dialect in agent.dialects:
        return True
    return waited_s(call, now) >= rules.dialect_overflow_s


def level_allows(agent: AgentSlot, call: WaitingCall, now: datetime,
                 rules: RoutingRules) -> bool:
    """County agents serve their own county's townships; city agents take the overflow."""
    if agent.level == "city":
        return waited_s(call, now) >= rules.overflow_s
    return agent.county == call.county


def eligible(call: WaitingCall, agent: AgentSlot, now: datetime, rules: RoutingRules) -> bool:
    """Could ``agent`` take ``call`` now, ignoring whether the agent is free?"""
    if call.reserved_for is not None:
        # The transferring agent chose this colleague, skills and level notwithstanding.
        return agent.id == call.reserved_for and agent.id not in call.excluded
    return (agent.id not in call.excluded
            and has_skill(agent, call.category)
            and speaks(agent, call, now, rules)
            and level_allows(agent, call, now, rules))


def free(agent: AgentSlot) -> bool:
    """Ready and within capacity (one live call per agent)."""
    return agent.state == "ready" and agent.live_calls == 0


def serving_order(calls: Iterable[WaitingCall]) -> list[WaitingCall]:
    """Higher priority first, then the longest waiting, then the older id."""
    return sorted(calls, key=lambda c: (-c.priority, c.queued_at, c.id))


def _pick(candidates: Sequence[AgentSlot], strategy: Strategy) -> AgentSlot:
    if strategy == "round_robin":
        return min(candidates, key=lambda a: (a.last_offer_at is not None,
                                              a.last_offer_at or a.idle_since, a.id))
    return min(candidates, key=lambda a: (a.idle_since, a.id))


def plan(calls: Iterable[WaitingCall], agents: Iterable[AgentSlot], now: datetime,
         rules: RoutingRules) -> Plan:
    """Match waiting calls to free agents.

    Longest-idle and round-robin give each call at most one agent and each agent at
    most one call, serving calls in priority order; ring-all pairs every call with
    every free eligible agent (the first to accept wins the atomic claim).
    """
    pool = [a for a in agents if free(a)]
    out = Plan()
    for call in serving_order(calls):
        if not pool:
            break
        candidates = [a for a in pool if eligible(call, a, now, rules)]
        if not candidates:
            continue
        if rules.strategy == "ring_all":
            out.offers.extend((call.id, a.id) for a in candidates)
            continue
        chosen = _pick(candidates, rules.strategy)
        out.offers.append((call.id, chosen.id))
        pool.remove(chosen)
    return out


def position(call: WaitingCall, waiting: Iterable[WaitingCall]) -> int:
    """1-based place among the waiting calls of the same service category."""
    calls = list(waiting)
    return positions(calls).get(call.id, 0) or len(calls) + 1


def positions(waiting: Iterable[WaitingCall]) -> dict[int, int]:
    """Every waiting call's 1-based place among the calls of its service category."""
    places: dict[int, int] = {}
    seen: dict[str, int] = {}
    for call in serving_order(waiting):
        seen[call.category] = seen.get(call.category, 0) + 1
        places[call.id] = seen[call.category]
    return places


def eligible_in_s(call: WaitingCall, agent: AgentSlot, now: datetime,
                  rules: RoutingRules) -> float | None:
    """Seconds until ``agent`` may take ``call`` (0: now), or None if never."""
    waited = waited_s(call, now)
    steps = sorted({0.0, rules.overflow_s - waited, rules.dialect_overflow_s - waited})
    for step in steps:
        if step < 0:
            continue
        later = now + timedelta(seconds=step + 0.001)
        if eligible(call, agent, now if step == 0 else later, rules):
            return step
    return None


def estimate_wait_s(call: WaitingCall, place: int, agents: Iterable[AgentSlot],
                    now: datetime, rules: RoutingRules, handle_s: float) -> float | None:
    """Expected seconds until an agent answers, or None when no eligible agent is on duty.

    ``place - 1`` calls are served first. A free agent takes the call as soon as it may
    (at once, or when an overflow time lets a city agent or a Mandarin speaker in);
    otherwise staffed eligible agents work through the calls ahead at ``handle_s`` each,
    busy ones being on average half-way through theirs.
    """
    staffed: list[tuple[AgentSlot, float]] = []
    for a in agents:
        if a.state in STAFFED_STATES:
            delay = eligible_in_s(call, a, now, rules)
            if delay is not None:
                staffed.append((a, delay))
    if not staffed:
        return None
    free_delays = sorted(delay for a, delay in staffed if free(a))
    if len(free_delays) >= place:
        return free_delays[place - 1]
    ahead = place - len(free_delays)
    rounds = math.ceil(ahead / len(staffed))
    soonest = min(delay for _, delay in staffed)
    return max((rounds - 0.5) * handle_s, soonest)
