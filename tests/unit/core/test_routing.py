"""Routing rules, table by table, and the two promises every plan keeps (hypothesis)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vwindow import routing
from vwindow.routing import AgentSlot, RoutingRules, WaitingCall

NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
RULES = RoutingRules(overflow_s=60, dialect_overflow_s=120)


def call(id: int = 1, *, category: str = "social_security", county: str = "黄山区",
         waited: float = 0, dialect: str | None = None, priority: int = 0,
         excluded: frozenset[int] = frozenset()) -> WaitingCall:
    return WaitingCall(id=id, category=category, county=county,
                       queued_at=NOW - timedelta(seconds=waited), dialect=dialect,
                       priority=priority, excluded=excluded)


def agent(id: int = 1, *, state: str = "ready", level: str = "county",
          county: str | None = "黄山区", skills: tuple[str, ...] = ("social_security",),
          dialects: tuple[str, ...] = ("普通话",), idle: float = 0,
          last_offer: float | None = None, live: int = 0) -> AgentSlot:
    return AgentSlot(id=id, state=state, level=level, county=county, skills=frozenset(skills),
                     dialects=frozenset(dialects), idle_since=NOW - timedelta(seconds=idle),
                     last_offer_at=None if last_offer is None
                     else NOW - timedelta(seconds=last_offer), live_calls=live)


# -- eligibility: skill × dialect × level × pairing × overflow time ------------------------

ELIGIBILITY = [
    # (case, call kwargs, agent kwargs, eligible?)
    ("same skill, paired county", {}, {}, True),
    ("other skill", {"category": "market"}, {}, False),
    ("wildcard skill", {"category": "market"}, {"skills": ("*",)}, True),
    ("no skills at all", {}, {"skills": ()}, False),
    ("Mandarin call, any agent", {"dialect": "普通话"}, {}, True),
    ("dialect call, agent speaks it", {"dialect": "徽州话"}, {"dialects": ("普通话", "徽州话")},
     True),
    ("dialect call, agent does not speak it", {"dialect": "徽州话"}, {}, False),
    ("dialect call after dialect overflow", {"dialect": "徽州话", "waited": 121}, {}, True),
    ("dialect call just before dialect overflow", {"dialect": "徽州话", "waited": 119}, {},
     False),
    ("other county's agent", {}, {"county": "歙县"}, False),
    ("other county's agent even after overflow", {"waited": 600}, {"county": "歙县"}, False),
    ("city agent before overflow", {"waited": 59}, {"level": "city", "county": None}, False),
    ("city agent after overflow", {"waited": 61}, {"level": "city", "county": None}, True),
    ("city agent after overflow, wrong skill", {"waited": 61, "category": "land"},
     {"level": "city", "county": None}, False),
    ("city agent after overflow, dialect not yet overflowed",
     {"waited": 61, "dialect": "徽州话"}, {"level": "city", "county": None}, False),
    ("city agent after both overflows", {"waited": 121, "dialect": "徽州话"},
     {"level": "city", "county": None}, True),
    ("agent declined this call", {"excluded": frozenset({1})}, {}, False),
]


@pytest.mark.parametrize(("case", "call_kw", "agent_kw", "expected"), ELIGIBILITY,
                         ids=[row[0] for row in ELIGIBILITY])
def test_eligibility(case: str, call_kw: dict[str, object], agent_kw: dict[str, object],
                     expected: bool) -> None:
    assert routing.eligible(call(**call_kw), agent(**agent_kw), NOW, RULES) is expected  # type: ignore[arg-type]


CAPACITY = [
    ("ready", 0, True),
    ("ready", 1, False),  # one live call per agent
    ("ringing", 0, False),
    ("in_call", 1, False),
    ("wrap_up", 0, False),
    ("away", 0, False),
    ("offline", 0, False),
]


@pytest.mark.parametrize(("state", "live", "offered"), CAPACITY)
def test_only_free_agents_are_offered_calls(state: str, live: int, offered: bool) -> None:
    plan = routing.plan([call()], [agent(state=state, live=live)], NOW, RULES)
    assert bool(plan.offers) is offered


# -- order and strategies --------------------------------------------------------------


def test_priority_first_then_longest_waiting() -> None:
    calls = [call(1, waited=100), call(2, waited=10, priority=10), call(3, waited=200),
             call(4, waited=200, priority=10)]
    assert [c.id for c in routing.serving_order(calls)] == [4, 2, 3, 1]


def test_longest_idle_agent_gets_the_first_call() -> None:
    agents = [agent(1, idle=10), agent(2, idle=300), agent(3, idle=60)]
    plan = routing.plan([call(1, waited=5), call(2, waited=50)], agents, NOW, RULES)
    # The longest-waiting call goes to the longest-idle agent, the next to the next.
    assert plan.offers == [(2, 2), (1, 3)]


def test_round_robin_goes_to_the_agent_offered_longest_ago() -> None:
    rules = RoutingRules(strategy="round_robin")
    agents = [agent(1, idle=500, last_offer=5), agent(2, idle=10, last_offer=50),
              agent(3, idle=20, last_offer=30)]
    assert routing.plan([call()], agents, NOW, rules).offers == [(1, 2)]
    # An agent never offered anything comes first.
    agents.append(agent(4, idle=1))
    assert routing.plan([call()], agents, NOW, rules).offers == [(1, 4)]


def test_ring_all_rings_every_free_eligible_agent() -> None:
    rules = RoutingRules(strategy="ring_all")
    agents = [agent(1), agent(2), agent(3, skills=("land",)), agent(4, state="away")]
    assert routing.plan([call()], agents, NOW, rules).offers == [(1, 1), (1, 2)]


def test_elderly_caller_is_served_before_earlier_callers() -> None:
    elderly = routing.priority_for(date(1950, 3, 1), NOW.date(), appointment=False,
                                   callback=False, rules=RULES)
    young = routing.priority_for(date(1990, 3, 1), NOW.date(), appointment=False,
                                 callback=False, rules=RULES)
    holder = routing.priority_for(None, NOW.date(), appointment=True, callback=False,
                                  rules=RULES)
    assert (elderly, young, holder) == (RULES.elderly_boost, 0, RULES.appointment_boost)
    calls = [call(1, waited=300, priority=young), call(2, waited=5, priority=elderly)]
    assert routing.plan(calls, [agent()], NOW, RULES).offers == [(2, 1)]


@pytest.mark.parametrize(("born", "age"), [(date(1961, 11, 21), 65), (date(1961, 11, 22), 64),
                                           (date(1960, 2, 29), 66)])
def test_age_counts_birthdays(born: date, age: int) -> None:
    assert routing.age_on(born, NOW.date()) == age


def test_a_call_nobody_may_take_waits_without_blocking_others() -> None:
    calls = [call(1, category="land", waited=500), call(2, waited=1)]
    assert routing.plan(calls, [agent()], NOW, RULES).offers == [(2, 1)]


# -- what the kiosk is told ------------------------------------------------------------


def test_position_counts_calls_of_the_same_service_ahead() -> None:
    calls = [call(1, waited=30), call(2, waited=20, category="land"), call(3, waited=10),
             call(4, waited=5, priority=10)]
    assert [routing.position(c, calls) for c in calls] == [2, 1, 3, 1]


@pytest.mark.parametrize(("place", "agents", "expected"), [
    (1, [agent(1)], 0.0),                                   # someone is free
    (1, [agent(1, state="in_call")], 150.0),               # half a call on average
    (3, [agent(1, state="in_call"), agent(2, state="wrap_up")], 450.0),  # second round
    (2, [agent(1, state="in_call"), agent(2, state="away")], 450.0),     # away: not counted
    (1, [agent(1, state="away")], None),                   # nobody on duty
    (1, [agent(1, state="in_call", skills=("land",))], None),  # nobody with the skill
])
def test_wait_estimate(place: int, agents: list[AgentSlot], expected: float | None) -> None:
    assert routing.estimate_wait_s(call(), place, agents, NOW, RULES, 300.0) == expected


def test_wait_estimate_counts_city_agents_but_not_before_the_overflow() -> None:
    city = agent(9, level="city", county=None, state="ready")
    assert routing.estimate_wait_s(call(waited=20), 1, [city], NOW, RULES, 300.0) == 40.0
    assert routing.estimate_wait_s(call(waited=70), 1, [city], NOW, RULES, 300.0) == 0.0


# -- properties ------------------------------------------------------------------------

CATEGORIES = ("social_security", "land", "market")
COUNTIES = ("黄山区", "歙县")
DIALECTS = (None, "普通话", "徽州话")

calls_st = st.lists(
    st.builds(
        lambda i, cat, county, waited, dialect, prio, excl: call(
            i, category=cat, county=county, waited=waited, dialect=dialect, priority=prio,
            excluded=frozenset(excl)),
        st.integers(1, 10_000), st.sampled_from(CATEGORIES), st.sampled_from(COUNTIES),
        st.floats(0, 400), st.sampled_from(DIALECTS), st.integers(0, 20),
        st.sets(st.integers(1, 12), max_size=3)),
    max_size=15, unique_by=lambda c: c.id)

agents_st = st.lists(
    st.builds(
        lambda i, state, level, county, skills, dialects, idle, live: agent(
            i, state=state, level=level, county=None if level == "city" else county,
            skills=tuple(skills), dialects=tuple(dialects), idle=idle, live=live),
        st.integers(1, 12), st.sampled_from(routing.AGENT_STATES),
        st.sampled_from(("county", "city")), st.sampled_from(COUNTIES),
        st.sets(st.sampled_from((*CATEGORIES, "*")), max_size=3),
        st.sets(st.sampled_from(("普通话", "徽州话")), max_size=2),
        st.floats(0, 1000), st.integers(0, 1)),
    max_size=12, unique_by=lambda a: a.id)


@settings(max_examples=400, deadline=None)
@given(calls_st, agents_st, st.sampled_from(("longest_idle", "round_robin")))
def test_no_call_is_offered_twice_and_no_eligible_agent_idles(
        calls: list[WaitingCall], agents: list[AgentSlot], strategy: routing.Strategy) -> None:
    rules = RoutingRules(strategy=strategy, overflow_s=60, dialect_overflow_s=120)
    offers = routing.plan(calls, agents, NOW, rules).offers
    offered_calls = [c for c, _ in offers]
    offered_agents = [a for _, a in offers]
    assert len(set(offered_calls)) == len(offered_calls), "a call offered to two agents"
    assert len(set(offered_agents)) == len(offered_agents), "an agent offered two calls"
    by_id = {a.id: a for a in agents}
    calls_by_id = {c.id: c for c in calls}
    for call_id, agent_id in offers:
        assert routing.free(by_id[agent_id])
        assert routing.eligible(calls_by_id[call_id], by_id[agent_id], NOW, rules)
    # Nobody left idle: no free agent unoffered while an unoffered call they could take waits.
    for a in agents:
        if not routing.free(a) or a.id in offered_agents:
            continue
        for c in calls:
            assert c.id in offered_calls or not routing.eligible(c, a, NOW, rules), (
                f"agent {a.id} idles while call {c.id} waits")


@settings(max_examples=200, deadline=None)
@given(calls_st, agents_st)
def test_ring_all_offers_each_pair_once_and_only_eligible(
        calls: list[WaitingCall], agents: list[AgentSlot]) -> None:
    rules = RoutingRules(strategy="ring_all", overflow_s=60, dialect_overflow_s=120)
    offers = routing.plan(calls, agents, NOW, rules).offers
    assert len(set(offers)) == len(offers)
    expected = {(c.id, a.id) for c in calls for a in agents
                if routing.free(a) and routing.eligible(c, a, NOW, rules)}
    assert set(offers) == expected
