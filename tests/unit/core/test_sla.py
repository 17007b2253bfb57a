"""SLA clocks: business-time arithmetic table by table, its inverse (hypothesis), milestone
states with a controllable ``now``, pauses (补正), and the ``[sla]`` config section."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vwindow.errors import ConfigError
from vwindow.sla import (
    EXAMPLE_HOLIDAYS_2026,
    EXAMPLE_WORKDAYS_2026,
    HOTLINE_12345,
    ORDINARY,
    BusinessCalendar,
    DurationError,
    MilestoneStatus,
    NaiveDatetimeError,
    Pause,
    Period,
    SlaClock,
    SlaError,
    SlaRule,
    SlaRuleSet,
    parse_duration,
    worst,
)
from vwindow.sla_config import SlaConfig

SH = ZoneInfo("Asia/Shanghai")
OFFICE = BusinessCalendar()
# 2026-03-02 is a Monday; the week of 03-02 … 03-08 has no holidays.
HOLIDAY_TUE = BusinessCalendar(holidays=frozenset({date(2026, 3, 3)}))
MAKEUP_SAT = BusinessCalendar(workdays=frozenset({date(2026, 3, 7)}))
SPRING_2026 = SlaConfig(holidays=EXAMPLE_HOLIDAYS_2026,
                        workdays=EXAMPLE_WORKDAYS_2026).calendar()
ALWAYS = BusinessCalendar.around_the_clock()


def at(day: int, hh: int, mm: int = 0, month: int = 3) -> datetime:
    """A Shanghai instant in March 2026 (unless another month is given)."""
    return datetime(2026, month, day, hh, mm, tzinfo=SH)


H, M = timedelta(hours=1), timedelta(minutes=1)

# -- add_business_time ---------------------------------------------------------------------

ADD = [
    # (case, calendar, start, duration, deadline)
    ("inside the morning", OFFICE, at(2, 9), H, at(2, 10)),
    ("zero inside hours is the start", OFFICE, at(2, 9), 0 * H, at(2, 9)),
    ("exactly to lunch ends at 12:00", OFFICE, at(2, 11), H, at(2, 12)),
    ("across lunch", OFFICE, at(2, 11, 30), H, at(2, 15)),
    ("start during lunch", OFFICE, at(2, 12, 30), 30 * M, at(2, 15)),
    ("start before opening", OFFICE, at(2, 7), 30 * M, at(2, 9)),
    ("across the evening", OFFICE, at(2, 17), H, at(3, 9)),
    ("zero in the evening is the next opening", OFFICE, at(2, 20), 0 * H, at(3, 8, 30)),
    ("at 12:00 exactly nothing is open", OFFICE, at(2, 12), 0 * H, at(2, 14, 30)),
    ("across the weekend", OFFICE, at(6, 17), H, at(9, 9)),
    ("start on Saturday", OFFICE, at(7, 10), 2 * H, at(9, 10, 30)),
    ("whole working day", OFFICE, at(2, 8, 30), 6.5 * H, at(2, 17, 30)),
    ("over a holiday", HOLIDAY_TUE, at(2, 17), H, at(4, 9)),
    ("start on a holiday", HOLIDAY_TUE, at(3, 10), 0 * H, at(4, 8, 30)),
    ("into a make-up Saturday (调休)", MAKEUP_SAT, at(6, 17), H, at(7, 9)),
    ("make-up Saturday keeps the lunch break", MAKEUP_SAT, at(7, 11), 2 * H, at(7, 15, 30)),
    ("20 working days spans four weeks", OFFICE, at(2, 8, 30), 20 * 6.5 * H, at(27, 17, 30)),
    ("Spring Festival: make-up Saturday Feb 14", SPRING_2026, at(13, 17, month=2), H,
     at(14, 9, month=2)),
    ("Spring Festival: Feb 15-23 off", SPRING_2026, at(13, 17, month=2), 8 * H,
     at(24, 9, 30, month=2)),
    ("24×7 ignores hours", ALWAYS, at(7, 3), 5 * H, at(7, 8)),
    ("UTC input, Shanghai hours (UTC+8, no DST)", OFFICE,
     datetime(2026, 3, 2, 1, 0, tzinfo=UTC), H, at(2, 10)),
    ("UTC input in the Shanghai evening", OFFICE,
     datetime(2026, 3, 2, 10, 0, tzinfo=UTC), 30 * M, at(3, 9)),
]


@pytest.mark.parametrize(("case", "calendar", "start", "duration", "deadline"), ADD,
                         ids=[row[0] for row in ADD])
def test_add_business_time(case: str, calendar: BusinessCalendar, start: datetime,
                           duration: timedelta, deadline: datetime) -> None:
    got = calendar.add_business_time(start, duration)
    assert got == deadline, case
    assert got.tzinfo == calendar.tz
    assert calendar.business_time_between(start, got) == duration


BETWEEN = [
    ("one office day", OFFICE, at(2, 8), at(2, 18), 6.5 * H),
    ("Friday evening to Monday 09:00", OFFICE, at(6, 17), at(9, 9), H),
    ("lunch only", OFFICE, at(2, 12), at(2, 14, 30), 0 * H),
    ("reversed is negative", OFFICE, at(9, 9), at(6, 17), -H),
    ("a whole week", OFFICE, at(2, 0), at(9, 0), 5 * 6.5 * H),
    ("24×7", ALWAYS, at(7, 0), at(8, 0), 24 * H),
]


@pytest.mark.parametrize(("case", "calendar", "a", "b", "expected"), BETWEEN,
                         ids=[row[0] for row in BETWEEN])
def test_business_time_between(case: str, calendar: BusinessCalendar, a: datetime,
                               b: datetime, expected: timedelta) -> None:
    assert calendar.business_time_between(a, b) == expected, case


@pytest.mark.parametrize(("calendar", "when", "open_"), [
    (OFFICE, at(2, 8, 30), True),
    (OFFICE, at(2, 8, 29), False),
    (OFFICE, at(2, 11, 59), True),
    (OFFICE, at(2, 12), False),
    (OFFICE, at(2, 17, 30), False),
    (OFFICE, at(7, 10), False),
    (MAKEUP_SAT, at(7, 10), True),
    (HOLIDAY_TUE, at(3, 10), False),
    (ALWAYS, at(7, 3), True),
])
def test_is_open(calendar: BusinessCalendar, when: datetime, open_: bool) -> None:
    assert calendar.is_open(when) is open_


def test_next_open() -> None:
    assert OFFICE.next_open(at(2, 12, 10)) == at(2, 14, 30)
    assert OFFICE.next_open(at(6, 18)) == at(9, 8, 30)
    assert OFFICE.next_open(at(2, 10)) == at(2, 10)


def test_dst_zone_counts_real_time() -> None:
    # Berlin springs forward on 2026-03-29 (a Sunday): a 24×7 day there is 23 real hours.
    berlin = ZoneInfo("Europe/Berlin")
    day = BusinessCalendar(tz=berlin, week=((Period.parse("00:00-24:00"),),) * 7)
    start = datetime(2026, 3, 29, 0, 0, tzinfo=berlin)
    assert day.business_time_between(start, start + timedelta(days=1)) == 23 * H
    office = BusinessCalendar(tz=berlin)
    friday = datetime(2026, 3, 27, 17, 0, tzinfo=berlin)
    assert office.add_business_time(friday, H) == datetime(2026, 3, 30, 9, 0, tzinfo=berlin)


CALENDARS = st.sampled_from([
    OFFICE, HOLIDAY_TUE, MAKEUP_SAT, SPRING_2026, ALWAYS,
    BusinessCalendar(tz=ZoneInfo("Europe/Berlin"),
                     week=((Period.parse("01:00-02:30"), Period.parse("02:40-03:30")),) * 6
                     + ((),)),
    BusinessCalendar(tz=timezone(timedelta(hours=-7, minutes=-30)),
                     week=((Period.parse("00:00-06:00"), Period.parse("22:00-24:00")),) * 7),
])
ZONES = st.sampled_from([UTC, SH, ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York"),
                         timezone(timedelta(hours=5))])
INSTANTS = st.one_of(  # mostly around the 2026 example holidays, sometimes anywhere
    st.datetimes(datetime(2025, 12, 1), datetime(2027, 1, 31), timezones=ZONES),
    st.datetimes(datetime(1970, 1, 1), datetime(2100, 12, 31), timezones=ZONES),
)


@settings(max_examples=150, deadline=None)
@given(CALENDARS, INSTANTS, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=8)))
def test_between_inverts_add(calendar: BusinessCalendar, start: datetime,
                             duration: timedelta) -> None:
    deadline = calendar.add_business_time(start, duration)
    assert deadline >= start
    assert calendar.business_time_between(start, deadline) == duration
    if duration:
        # The earliest such instant: a moment before, the budget is not yet used up.
        before = deadline - timedelta(microseconds=1)
        assert calendar.business_time_between(start, before) < duration


def test_naive_datetimes_refused() -> None:
    naive = datetime(2026, 3, 2, 9, 0)
    with pytest.raises(NaiveDatetimeError, match=r"start '2026-03-02T09:00:00' is naive"):
        OFFICE.add_business_time(naive, H)
    with pytest.raises(NaiveDatetimeError, match="naive"):
        OFFICE.business_time_between(at(2, 9), naive)
    with pytest.raises(NaiveDatetimeError, match="naive"):
        OFFICE.is_open(naive)
    with pytest.raises(NaiveDatetimeError, match="now"):
        SlaClock().evaluate(HOTLINE_12345, at(2, 9), {}, naive)
    with pytest.raises(NaiveDatetimeError, match="first_response"):
        SlaClock().evaluate(HOTLINE_12345, at(2, 9), {"first_response": naive}, at(2, 10))


@pytest.mark.parametrize(("build", "message"), [
    (lambda: Period.parse("12:00-08:30"), "start before it ends"),
    (lambda: Period.parse("25:00-26:00"), "'25:00'"),
    (lambda: Period.parse("0830-1200"), "HH:MM-HH:MM"),
    (lambda: BusinessCalendar(week=((Period.parse("08:00-12:00"),
                                     Period.parse("11:00-13:00")),) * 7), "overlap"),
    (lambda: BusinessCalendar(holidays=frozenset({date(2026, 3, 7)}),
                              workdays=frozenset({date(2026, 3, 7)})), "2026-03-07"),
    (lambda: BusinessCalendar(week=((),) * 7), "never open"),
    (lambda: OFFICE.add_business_time(at(2, 9), -H), "negative"),
    (lambda: OFFICE.add_business_time(datetime(9999, 12, 30, tzinfo=UTC), 100 * H), "9999"),
])
def test_calendar_errors_named(build: Callable[[], object], message: str) -> None:
    with pytest.raises(SlaError, match=message):
        build()


# -- milestones ----------------------------------------------------------------------------

CLOCK = SlaClock(OFFICE)
START = at(2, 9)  # Monday 09:00


def status(key: str, now: datetime, events: Mapping[str, datetime | None] | None = None,
           pauses: Sequence[Pause] = (), rule_set: SlaRuleSet = HOTLINE_12345,
           started: datetime = START) -> MilestoneStatus:
    statuses = CLOCK.evaluate(rule_set, started, events or {}, now, pauses)
    return next(s for s in statuses if s.key == key)


def test_states_follow_now() -> None:
    # first_response: 30 business minutes, near breach at 80% (24 min).
    seen = [(status("first_response", START + m * M).state,
             status("first_response", START + m * M).remaining)
            for m in (0, 10, 23, 24, 30, 31)]
    assert seen == [("pending", 30 * M), ("pending", 20 * M), ("pending", 7 * M),
                    ("near_breach", 6 * M), ("near_breach", 0 * M), ("breached", -M)]
    late = status("first_response", at(2, 12, 30))
    assert late.state == "breached" and late.remaining == -150 * M  # lunch is not counted
    assert late.deadline == at(2, 9, 30) and late.flagged


def test_met_and_met_late() -> None:
    events: dict[str, datetime | None] = {"first_response": at(2, 9, 20), "feedback": None,
                                          "result": at(6, 9), "contact": START}
    by_key = {s.key: s for s in CLOCK.evaluate(HOTLINE_12345, START, events, at(6, 10))}
    assert by_key["contact"].state == "met"
    assert by_key["first_response"].state == "met"
    assert by_key["first_response"].remaining == 10 * M  # margin left when it was met
    assert by_key["feedback"].state == "breached"
    assert by_key["result"].deadline == at(5, 16)  # 24 business hours from Mon 09:00
    assert by_key["result"].state == "met_late"
    assert not by_key["result"].flagged
    on_the_dot = status("result", at(6, 10), {"result": at(5, 16)})
    assert on_the_dot.state == "met"


def test_contact_at_once_is_literal_and_calendar_time() -> None:
    assert status("contact", START).state == "near_breach"
    assert status("contact", START + timedelta(seconds=1)).state == "breached"
    assert status("contact", at(2, 10), {"contact": START + M}).state == "met_late"


def test_event_after_now_has_not_happened() -> None:
    assert status("first_response", at(2, 9, 5), {"first_response": at(2, 9, 20)}).state \
        == "pending"


def test_business_clock_stops_overnight_calendar_clock_does_not() -> None:
    evening = SlaRuleSet("evening", (SlaRule("call_back", 2 * H, clock="calendar"),
                                     SlaRule("reply", 2 * H)))
    late_start = at(6, 17)  # Friday 17:00
    by_key = {s.key: s for s in CLOCK.evaluate(evening, late_start, {}, at(6, 20))}
    assert by_key["call_back"].deadline == at(6, 19)
    assert by_key["call_back"].state == "breached"
    assert by_key["reply"].deadline == at(9, 10)  # half an hour Friday, 1.5 h Monday
    assert by_key["reply"].state == "pending" and by_key["reply"].remaining == 90 * M


def test_working_days_budget() -> None:
    result = status("result", at(2, 9), rule_set=ORDINARY)
    assert result.budget == 20 * 6.5 * H
    assert result.deadline == at(30, 9)  # 20 working days later, same time of day
    saturday = CLOCK.evaluate(ORDINARY, at(7, 10), {}, at(7, 11))[1]
    assert saturday.deadline == at(3, 17, 30, month=4)  # counts from Monday's opening


def test_pause_stops_the_result_clock() -> None:
    # Returned for material (补正) all of Tuesday: one working day added to the deadline.
    closed = [(at(3, 8, 30), at(4, 8, 30))]
    result = status("result", at(4, 10), pauses=closed)
    assert result.deadline == at(6, 16)
    assert result.elapsed == 6 * H + 1.5 * H and not result.paused
    # Non-pausable milestones keep running.
    assert status("feedback", at(4, 10), pauses=closed).deadline == at(2, 11)


def test_open_pause_freezes_remaining() -> None:
    open_ = [(at(3, 8, 30), None)]
    monday_evening = status("result", at(2, 18))
    for now in (at(3, 12), at(4, 16), at(11, 9)):
        paused = status("result", now, pauses=open_)
        assert paused.paused
        assert paused.remaining == monday_evening.remaining == 18 * H
        assert paused.state == "pending"
        assert paused.deadline == OFFICE.add_business_time(now, 18 * H)
    # Resumed Wednesday 10:00: the deadline moves by the paused open time (6.5 h + 1.5 h).
    resumed = status("result", at(4, 12), pauses=[(at(3, 8, 30), at(4, 10))])
    assert resumed.deadline == OFFICE.add_business_time(at(5, 16), 8 * H) == at(6, 17, 30)
    assert resumed.remaining == 18 * H - 2 * H


def test_overlapping_and_out_of_range_pauses() -> None:
    messy: list[tuple[datetime, datetime | None]] = [
        (at(1, 8), at(2, 9, 30)),  # starts before the case: only 09:00-09:30 counts
        (at(3, 9), at(3, 11)), (at(3, 10), at(3, 12)),  # overlap: 3 h, not 4
        (at(20, 9), None),  # after now: has not happened
    ]
    result = status("result", at(4, 8, 30), pauses=messy)
    assert result.elapsed == 6 * H - 30 * M + 6.5 * H - 3 * H
    assert not result.paused
    with pytest.raises(SlaError, match="pause 0 ends"):
        status("result", at(4, 9), pauses=[(at(3, 10), at(3, 9))])


PAUSES = st.lists(st.tuples(st.timedeltas(timedelta(0), timedelta(days=10)),
                            st.timedeltas(timedelta(0), timedelta(days=3))), max_size=3)


@settings(max_examples=60, deadline=None)
@given(st.timedeltas(timedelta(0), timedelta(days=2)), PAUSES,
       st.sampled_from(["feedback", "result", "contact"]))
def test_deadline_is_where_the_budget_runs_out(offset: timedelta,
                                               gaps: list[tuple[timedelta, timedelta]],
                                               key: str) -> None:
    start = START + offset
    pauses: list[Pause] = [(start + lo, start + lo + span) for lo, span in gaps]
    far = status(key, start + timedelta(days=30), pauses=pauses, started=start)
    assert far.state == "breached"
    on_time = status(key, far.deadline, pauses=pauses, started=start)
    assert on_time.deadline == far.deadline
    assert on_time.remaining == timedelta(0) and on_time.state == "near_breach"
    tick = timedelta(microseconds=1)
    assert status(key, far.deadline + tick, pauses=pauses, started=start).state == "breached"
    met = status(key, far.deadline + tick, {key: far.deadline}, pauses, started=start)
    assert met.state == "met"


def test_worst() -> None:
    statuses = CLOCK.evaluate(HOTLINE_12345, START, {"contact": START}, at(2, 9, 25))
    assert [s.state for s in statuses] == ["met", "near_breach", "pending", "pending"]
    picked = worst(statuses)
    assert picked is not None and picked.key == "first_response"
    assert worst([]) is None
    later = CLOCK.evaluate(HOTLINE_12345, START, {"contact": START}, at(2, 16))
    picked = worst(later)
    assert picked is not None and (picked.key, picked.state) == ("first_response", "breached")


def test_rule_validation() -> None:
    with pytest.raises(SlaError, match="warn_at"):
        SlaRule("result", H, warn_at=0)
    with pytest.raises(SlaError, match="'First Response'"):
        SlaRule("First Response", H)
    with pytest.raises(SlaError, match="'result' twice"):
        SlaRuleSet("x", (SlaRule("result", H), SlaRule("result", 2 * H)))
    with pytest.raises(SlaError, match="no milestone 'visit'"):
        HOTLINE_12345.milestone("visit")


# -- config --------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "parsed"), [
    ("0", (0, timedelta(0))), ("30m", (0, 30 * M)), ("2h", (0, 2 * H)), ("5d", (5, 0 * H)),
    ("1d4h", (1, 4 * H)), ("90s", (0, timedelta(seconds=90))), ("PT30M", (0, 30 * M)),
    ("P2DT1H", (2, H)), (" 2H ", (0, 2 * H)),
])
def test_parse_duration(text: str, parsed: tuple[int, timedelta]) -> None:
    assert parse_duration(text) == parsed


@pytest.mark.parametrize("text", ["", "30x", "h", "2h30", "PT", "-5m", "1.5h", "99999d"])
def test_parse_duration_names_bad_value(text: str) -> None:
    with pytest.raises(DurationError, match=repr(text)):
        parse_duration(text)


TOML = """
[sla]
timezone = "Asia/Shanghai"
holidays = ["2026-02-15..2026-02-23", "2026-04-06"]
workdays = ["2026-02-14"]
default_rule_set = "township"

[sla.weekday_periods]
sat = ["09:00-12:00"]

[sla.items]
"340100-HK-0001" = "12345"

[sla.categories]
social_security = "fast"

[[sla.rule_sets.fast]]
key = "first_response"
within = "30m"

[[sla.rule_sets.fast]]
key = "result"
within = "3d"
warn_at = 0.5
pausable = true

[[sla.rule_sets.township]]
key = "result"
within = "10d"
pausable = true
"""


def test_config_from_toml() -> None:
    cfg = SlaConfig.from_mapping(tomllib.loads(TOML)["sla"])
    assert cfg.rule_set_for("340100-HK-0001", "social_security").name == "12345"
    assert cfg.rule_set_for("other", "social_security").name == "fast"
    assert cfg.rule_set_for("other", "land").name == "township"
    assert cfg.rule_set_for().name == "township"
    fast = cfg.rule_set("fast").milestone("result")
    assert (fast.days, fast.warn_at, fast.pausable, fast.clock) == (3, 0.5, True, "business")
    calendar = cfg.calendar()
    assert calendar.is_open(at(7, 10))  # Saturday mornings open
    assert not calendar.is_open(at(7, 15))
    assert not calendar.is_open(at(16, 10, month=2))
    assert calendar.is_open(at(14, 15, month=2))  # make-up Saturday has the full day
    assert not calendar.is_open(at(6, 10, month=4))
    assert cfg.clock().calendar == calendar


def test_config_defaults() -> None:
    cfg = SlaConfig()
    assert cfg.calendar() == BusinessCalendar()
    assert cfg.rule_set_for("anything", "anything") == ORDINARY
    assert cfg.rule_set("12345") == HOTLINE_12345
    assert SlaConfig(always_open=True).calendar().is_open(at(7, 3))


@pytest.mark.parametrize(("data", "message"), [
    ({"rule_sets": {"fast": [{"key": "result", "within": "30x"}]}},
     r"sla\.rule_sets\.fast\.0\.within.*'30x'"),
    ({"rule_sets": {"fast": [{"key": "result", "within": "1h", "colour": "red"}]}},
     r"unknown config key 'sla\.rule_sets\.fast\.0\.colour'"),
    ({"holliday": []}, r"unknown config key 'sla\.holliday'"),
    ({"holidays": ["2026-02-30"]}, "'2026-02-30'"),
    ({"holidays": ["2026-03-01..2026-02-01"]}, "must run forward"),
    ({"timezone": "Mars/Olympus"}, "'Mars/Olympus'"),
    ({"periods": ["08:30-12:00", "11:00-17:30"]}, "overlap"),
    ({"periods": ["8.30-12"]}, "'8.30-12'"),
    ({"holidays": ["2026-02-14"], "workdays": ["2026-02-14"]}, "2026-02-14"),
    ({"items": {"X-1": "fastest"}}, r"items\.X-1: unknown rule set 'fastest'"),
    ({"default_rule_set": "none"}, "unknown rule set 'none'"),
    ({"weekday_periods": {"funday": []}}, r"sla\.weekday_periods\.funday"),
    ({"rule_sets": {"x": [{"key": "a", "within": "1h", "warn_at": 1.5}]}}, "warn_at"),
    ({"rule_sets": {"x": [{"key": "a", "within": "1h"}, {"key": "a", "within": "2h"}]}},
     "'a' twice"),
])
def test_config_errors_name_the_value(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SlaConfig.from_mapping(data)


def test_unknown_rule_set_lookup() -> None:
    with pytest.raises(SlaError, match="'nope'"):
        SlaConfig().rule_set("nope")
