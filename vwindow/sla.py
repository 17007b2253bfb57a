"""SLA clocks: business calendars, milestone rule sets, and the state of each case's clocks.

Pure rules, no database and no I/O, so every clock is tested with a controllable ``now``:

- ``BusinessCalendar``: when a county office is open (weekday periods with a lunch break,
  holidays, make-up working days 调休, or 24×7), how much open time lies between two
  instants, and the deadline ``add_business_time`` gives.
- ``SlaRule`` / ``SlaRuleSet``: named milestone budgets, each on a business or a calendar
  clock: the 12345 hotline's "contact at once, first response in 30 min, feedback in 2 h,
  result in 24 h" and, for ordinary items, a result in N working days.
- ``SlaClock.evaluate``: deadline, state and remaining time of each milestone of one case,
  with pauses (补正: while the citizen brings missing material the result clock stops);
  ``worst`` picks the status to flag to the agent and the supervisor.
- ``vwindow.sla_config.SlaConfig``: the ``[sla]`` config section; builds the calendar and
  picks a rule set per service item code or category, with a fallback.

Every instant is timezone-aware (naive input raises ``NaiveDatetimeError``); arithmetic is
done on UTC instants, so durations are real elapsed time even across a DST change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from itertools import pairwise
from typing import Literal
from zoneinfo import ZoneInfo

from vwindow.errors import VWindowError

Clock = Literal["business", "calendar"]
State = Literal["pending", "near_breach", "breached", "met", "met_late"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FLAGGED_STATES: frozenset[State] = frozenset({"near_breach", "breached"})
# Least to most severe. A late but met milestone is history; one near breach can still be
# saved, so it ranks above met_late when choosing what to show first.
SEVERITY: tuple[State, ...] = ("met", "pending", "met_late", "near_breach", "breached")

DEFAULT_TIMEZONE = "Asia/Shanghai"
DEFAULT_PERIODS: tuple[str, ...] = ("08:30-12:00", "14:30-17:30")
MAX_DURATION = timedelta(days=3660)
"""Longest budget accepted: ten years; beyond that a typo is likelier than a rule."""

# Example data only, to show the config format: 2026 holidays (放假: New Year, Spring
# Festival around Feb 17, Qingming, Labour Day, Dragon Boat, Mid-Autumn, National Day) and
# make-up working days (调休上班). The State Council's real schedule may differ: a county
# copies the published one into ``[sla] holidays`` / ``workdays``. Not used by default.
EXAMPLE_HOLIDAYS_2026: tuple[str, ...] = (
    "2026-01-01..2026-01-03", "2026-02-15..2026-02-23", "2026-04-04..2026-04-06",
    "2026-05-01..2026-05-05", "2026-06-19..2026-06-21", "2026-09-25..2026-09-27",
    "2026-10-01..2026-10-07",
)
EXAMPLE_WORKDAYS_2026: tuple[str, ...] = (
    "2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10",
)

_ZERO = timedelta(0)
_DAY = timedelta(days=1)
RULE_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
"""What a rule set or period key may look like (also checked by the config model)."""
_HHMM = re.compile(r"(\d{1,2}):(\d{2})")
_COMPACT = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_ISO = re.compile(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?")


class SlaError(VWindowError):
    code = "invalid_sla"


class NaiveDatetimeError(SlaError):
    code = "naive_datetime"


class CalendarError(SlaError):
    code = "invalid_calendar"


class DurationError(SlaError):
    code = "invalid_duration"


class UnknownRuleSetError(SlaError):
    code = "unknown_rule_set"
    http_status = 404


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise NaiveDatetimeError(f"{name} {value.isoformat()!r} is naive: pass a timezone-aware "
                                 f"datetime (tzinfo=ZoneInfo({DEFAULT_TIMEZONE!r}))", field=name)
    return value.astimezone(UTC)


def parse_duration(text: str) -> tuple[int, timedelta]:
    """``"30m"``, ``"2h"``, ``"1d4h"``, ``"0"`` or ISO ``"PT30M"`` → (days, time of day part).

    Days are kept apart because on a business clock a day is a *working* day (see
    ``SlaRule.days``), not 24 hours.
    """
    raw = text.strip().replace(" ", "")
    if raw == "0":
        return 0, _ZERO
    match = _COMPACT.fullmatch(raw.lower()) or _ISO.fullmatch(raw.upper())
    if match is None or not any(match.groups()):
        raise DurationError(f"bad duration {text!r}: use e.g. '0', '90s', '30m', '2h', '5d', "
                            "'1d4h' or 'PT30M'", field="within")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    part = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    if days > MAX_DURATION.days or part > MAX_DURATION:
        raise DurationError(f"duration {text!r} is longer than {MAX_DURATION.days} days",
                            field="within")
    return days, part


def _parse_hhmm(text: str, whole: str) -> timedelta:
    match = _HHMM.fullmatch(text.strip())
    if match is None:
        raise CalendarError(f"bad working period {whole!r}: use 'HH:MM-HH:MM'", field="periods")
    hours, minutes = int(match[1]), int(match[2])
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise CalendarError(f"bad time {text!r} in working period {whole!r}", field="periods")
    return timedelta(hours=hours, minutes=minutes)


@dataclass(frozen=True, order=True)
class Period:
    """Open hours within one local day, as offsets from midnight; ``end`` may be 24:00.

    A night shift across midnight is two periods on two weekdays.
    """

    start: timedelta
    end: timedelta

    def __post_init__(self) -> None:
        if not _ZERO <= self.start < self.end <= _DAY:
            raise CalendarError(f"working period {self.start}-{self.end} must start before it "
                                "ends, within one day (00:00-24:00)", field="periods")

    @classmethod
    def parse(cls, text: str) -> Period:
        """``"08:30-12:00"`` → ``Period``."""
        start, sep, end = text.partition("-")
        if not sep:
            raise CalendarError(f"bad working period {text!r}: use 'HH:MM-HH:MM'",
                                field="periods")
        return cls(_parse_hhmm(start, text), _parse_hhmm(end, text))


_OFFICE_DAY: tuple[Period, ...] = tuple(Period.parse(p) for p in DEFAULT_PERIODS)


def _default_tz() -> tzinfo:
    return ZoneInfo(DEFAULT_TIMEZONE)


@dataclass(frozen=True)
class BusinessCalendar:
    """When the office is open, in its own timezone.

    ``week`` holds the periods of Monday … Sunday. A date in ``holidays`` is closed; a date in
    ``workdays`` (调休, usually a weekend) opens with ``workday_periods``, which is also the
    length of "a working day" for day-sized budgets. ``always_open`` makes a 24×7 calendar.
    """

    tz: tzinfo = field(default_factory=_default_tz)
    week: tuple[tuple[Period, ...], ...] = (_OFFICE_DAY,) * 5 + ((), ())
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()
    workday_periods: tuple[Period, ...] = _OFFICE_DAY
    always_open: bool = False

    def __post_init__(self) -> None:
        if len(self.week) != 7:
            raise CalendarError(f"week needs 7 days (Monday first), got {len(self.week)}",
                                field="week")
        named = [*zip(WEEKDAYS, self.week, strict=True), ("workday", self.workday_periods)]
        for name, periods in named:
            for before, after in pairwise(periods):
                if after.start < before.end:
                    raise CalendarError(f"working periods of {name} overlap or are out of "
                                        f"order: {before.start}-{before.end} and "
                                        f"{after.start}-{after.end}", field="periods")
        both = sorted(self.holidays & self.workdays)
        if both:
            raise CalendarError(f"{both[0].isoformat()} is both a holiday and a make-up "
                                "working day", field="workdays")
        if not self.always_open and not (any(self.week) and self.workday_periods):
            # Without an open weekday a deadline search would never end.
            raise CalendarError("the calendar is never open: give weekdays working periods or "
                                "set always_open", field="periods")

    @classmethod
    def around_the_clock(cls, tz: tzinfo | None = None) -> BusinessCalendar:
        """A 24×7 calendar: business time is calendar time."""
        return cls(tz=tz or _default_tz(), always_open=True)

    @property
    def working_day(self) -> timedelta:
        """Open time of one standard working day: the unit of day-sized business budgets."""
        if self.always_open:
            return _DAY
        return sum((p.end - p.start for p in self.workday_periods), _ZERO)

    def periods_on(self, day: date) -> tuple[Period, ...]:
        """The working periods of a local date (holidays and make-up days applied)."""
        if self.always_open:
            return (Period(_ZERO, _DAY),)
        if day in self.holidays:
            return ()
        if day in self.workdays:
            return self.workday_periods
        return self.week[day.weekday()]

    def _local_date(self, instant: datetime) -> date:
        return instant.astimezone(self.tz).date()

    def _intervals(self, day: date) -> Iterator[tuple[datetime, datetime]]:
        """Open intervals of one local date as UTC instants, ordered and disjoint."""
        # Aware + timedelta is wall-clock arithmetic in the calendar's zone, so 08:30 stays
        # 08:30 local on a DST day; the UTC conversion then gives the real instant.
        midnight = datetime.combine(day, time(0), tzinfo=self.tz)
        floor: datetime | None = None
        for period in self.periods_on(day):
            start = (midnight + period.start).astimezone(UTC)
            end = (midnight + period.end).astimezone(UTC)
            if floor is not None and start < floor:
                start = floor  # a fall-back hour can fold two periods onto each other
            if start < end:
                yield start, end
                floor = end

    def _first_day(self, instant: datetime) -> date:
        # One day early: where midnight itself is a DST fold, an instant's local date can be
        # the day before the one whose periods it falls into.
        day = self._local_date(instant)
        return day - _DAY if day > date.min else day

    def is_open(self, when: datetime) -> bool:
        instant = _utc(when, "when")
        if self.always_open:
            return True
        day = self._first_day(instant)
        return any(s <= instant < e for d in (day, day + _DAY) for s, e in self._intervals(d))

    def next_open(self, when: datetime) -> datetime:
        """``when`` itself if open, else the next opening (periods are half-open)."""
        return self.add_business_time(when, _ZERO)

    def add_business_time(self, start: datetime, duration: timedelta) -> datetime:
        """The instant at which ``duration`` of open time has passed since ``start``.

        A start outside hours counts from the next opening; a deadline that uses up a period
        exactly is that period's end (12:00, not 14:30). Steps day by day, not by minute.
        """
        cursor = _utc(start, "start")
        if duration < _ZERO:
            raise SlaError(f"duration {duration} is negative", field="duration")
        try:
            if self.always_open:
                return (cursor + duration).astimezone(self.tz)
            remaining, day = duration, self._first_day(cursor)
            while True:  # ends: __post_init__ made sure some weekday is open
                for begin, end in self._intervals(day):
                    if end <= cursor:
                        continue
                    begin = max(begin, cursor)
                    if remaining <= end - begin:
                        return (begin + remaining).astimezone(self.tz)
                    remaining -= end - begin
                day += _DAY
        except OverflowError as err:
            raise SlaError(f"adding {duration} of business time to {start.isoformat()} goes "
                           "past the year 9999", field="duration") from err

    def business_time_between(self, a: datetime, b: datetime) -> timedelta:
        """Open time in [a, b); negative when ``b`` is before ``a``."""
        lo, hi = _utc(a, "a"), _utc(b, "b")
        if hi < lo:
            return -self.business_time_between(b, a)
        if self.always_open:
            return hi - lo
        day, last, total = self._first_day(lo), self._local_date(hi), _ZERO
        while True:
            for begin, end in self._intervals(day):
                if end > lo and begin < hi:
                    total += min(end, hi) - max(begin, lo)
            if day >= last:
                return total
            day += _DAY


@dataclass(frozen=True)
class SlaRule:
    """One milestone's budget, counted from the case's start.

    The budget is ``days`` whole days plus ``within``. On a ``"business"`` clock a day is a
    working day (the calendar's ``working_day``: 6.5 h by default), so "5 working days"
    from Monday 10:00 ends next Monday 10:00, and from a Saturday it ends Friday 17:30; on
    a ``"calendar"`` clock a day is 24 h. ``warn_at`` is the fraction of the budget used up
    at which the milestone turns ``near_breach``. ``pausable`` milestones stop while the
    case is paused (补正, waiting for material).
    """

    key: str
    within: timedelta = _ZERO
    clock: Clock = "business"
    warn_at: float = 0.8
    days: int = 0
    pausable: bool = False

    def __post_init__(self) -> None:
        if not RULE_KEY.fullmatch(self.key):
            raise SlaError(f"milestone key {self.key!r} must be lower_snake_case", field="key")
        if self.clock not in ("business", "calendar"):
            raise SlaError(f"milestone {self.key!r}: clock {self.clock!r} is not 'business' or "
                           "'calendar'", field="clock")
        if self.within < _ZERO or self.days < 0:
            raise SlaError(f"milestone {self.key!r}: budget is negative", field="within")
        if not 0 < self.warn_at <= 1:
            raise SlaError(f"milestone {self.key!r}: warn_at {self.warn_at!r} is not in (0, 1]",
                           field="warn_at")

    def budget(self, calendar: BusinessCalendar) -> timedelta:
        """The whole budget as open time of ``calendar`` (or calendar time)."""
        day = calendar.working_day if self.clock == "business" else _DAY
        return day * self.days + self.within


@dataclass(frozen=True)
class SlaRuleSet:
    name: str
    milestones: tuple[SlaRule, ...]

    def __post_init__(self) -> None:
        if not self.name:
            raise SlaError("a rule set needs a name", field="name")
        if not self.milestones:
            raise SlaError(f"rule set {self.name!r} has no milestones", field="milestones")
        keys = [m.key for m in self.milestones]
        twice = sorted({key for key in keys if keys.count(key) > 1})
        if twice:
            raise SlaError(f"rule set {self.name!r} has milestone {twice[0]!r} twice",
                           field="milestones")

    def milestone(self, key: str) -> SlaRule:
        for rule in self.milestones:
            if rule.key == key:
                return rule
        raise SlaError(f"rule set {self.name!r} has no milestone {key!r}", field="key")


# The hotline (12345) clock. "At once" is literal: contact runs on the calendar clock with a
# zero budget, so a case only meets it when contact is recorded at its start (configure e.g.
# "2m" to allow a queue wait). The other three count business time: the window's agents
# work office hours, so a request left at 17:20 gets its 30-minute first response the next
# morning, not a breach at 17:50. The result may pause for missing material.
HOTLINE_12345 = SlaRuleSet("12345", (
    SlaRule("contact", _ZERO, clock="calendar"),
    SlaRule("first_response", timedelta(minutes=30)),
    SlaRule("feedback", timedelta(hours=2)),
    SlaRule("result", timedelta(hours=24), pausable=True),
))
# Ordinary items: first response (material pre-check, 材料预审) within 2 office hours; the
# result within 20 working days, the Administrative Licensing Law's default ceiling (art. 42);
# counties map items with shorter promised limits (承诺时限) to their own rule sets.
ORDINARY = SlaRuleSet("default", (
    SlaRule("first_response", timedelta(hours=2)),
    SlaRule("result", days=20, pausable=True),
))
BUILTIN_RULE_SETS: tuple[SlaRuleSet, ...] = (HOTLINE_12345, ORDINARY)


@dataclass(frozen=True)
class MilestoneStatus:
    """Where one milestone's clock stands at ``now``.

    ``elapsed`` and ``remaining`` are in the milestone's clock (business or calendar time),
    paused time excluded; ``remaining`` is negative once overdue (it stays 0 outside hours
    right after a business deadline, since no open time has passed). For a met milestone
    both are taken at ``met_at``. While a pause is open, ``deadline`` assumes it ends now.
    """

    key: str
    clock: Clock
    budget: timedelta
    deadline: datetime
    met_at: datetime | None
    state: State
    elapsed: timedelta
    remaining: timedelta
    paused: bool = False

    @property
    def flagged(self) -> bool:
        """Near breach or breached: shown to the agent and the supervisor."""
        return self.state in FLAGGED_STATES


def worst(statuses: Iterable[MilestoneStatus]) -> MilestoneStatus | None:
    """The most severe status (see ``SEVERITY``), least time left first; None if empty."""
    return max(statuses, key=lambda s: (SEVERITY.index(s.state), -s.remaining), default=None)


Pause = tuple[datetime, datetime | None]


def _pause_spans(pauses: Sequence[Pause], start: datetime, now: datetime
                 ) -> list[tuple[datetime, datetime]]:
    """Pauses clipped to [start, now] (an open one ends now), sorted and merged."""
    spans: list[tuple[datetime, datetime]] = []
    for index, (begin, end) in enumerate(pauses):
        lo = _utc(begin, f"pauses[{index}].start")
        hi = max(lo, now) if end is None else _utc(end, f"pauses[{index}].end")
        if hi < lo:
            raise SlaError(f"pause {index} ends ({hi.isoformat()}) before it starts "
                           f"({lo.isoformat()})", field=f"pauses[{index}]")
        lo, hi = max(lo, start), min(hi, now)
        if lo < hi:
            spans.append((lo, hi))
    merged: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def _deadline(calendar: BusinessCalendar, start: datetime, budget: timedelta,
              spans: Sequence[tuple[datetime, datetime]]) -> datetime:
    cursor, remaining = start, budget
    for begin, end in spans:
        candidate = calendar.add_business_time(cursor, remaining)
        if candidate <= begin:
            return candidate
        remaining -= calendar.business_time_between(cursor, begin)
        cursor = end
    return calendar.add_business_time(cursor, remaining)


@dataclass(frozen=True)
class SlaClock:
    """Evaluates a case's milestones against the office calendar."""

    calendar: BusinessCalendar = field(default_factory=BusinessCalendar)

    def evaluate(self, rule_set: SlaRuleSet, started_at: datetime,
                 events: Mapping[str, datetime | None], now: datetime,
                 pauses: Sequence[Pause] = ()) -> list[MilestoneStatus]:
        """One status per milestone of ``rule_set``, in its order.

        ``events`` maps milestone keys to when they were met (None or absent: not yet); keys
        the rule set lacks are ignored, so one event map serves every rule set. An event or
        pause after ``now`` has not happened yet as far as this evaluation goes.
        """
        start, at = _utc(started_at, "started_at"), _utc(now, "now")
        spans = _pause_spans(pauses, start, at)
        pause_open = any(end is None and _utc(begin, "pauses") <= at for begin, end in pauses)
        wall = BusinessCalendar.around_the_clock(self.calendar.tz)
        out: list[MilestoneStatus] = []
        for rule in rule_set.milestones:
            calendar = self.calendar if rule.clock == "business" else wall
            raw = events.get(rule.key)
            met = None if raw is None else _utc(raw, f"events[{rule.key!r}]")
            if met is not None and met > at:
                met = None
            until = at if met is None else met
            held = [(lo, min(hi, until)) for lo, hi in spans if lo < until] if rule.pausable \
                else []
            budget = rule.budget(calendar)
            deadline = _deadline(calendar, start, budget, held)
            paused_time = sum((calendar.business_time_between(lo, hi) for lo, hi in held), _ZERO)
            elapsed = max(_ZERO, calendar.business_time_between(start, until) - paused_time)
            state: State
            if met is not None:
                state = "met" if met <= deadline else "met_late"
            elif at > deadline:
                state = "breached"
            elif elapsed >= budget * rule.warn_at:
                state = "near_breach"
            else:
                state = "pending"
            out.append(MilestoneStatus(
                key=rule.key, clock=rule.clock, budget=budget,
                deadline=deadline.astimezone(self.calendar.tz),
                met_at=None if met is None else met.astimezone(self.calendar.tz),
                state=state, elapsed=elapsed, remaining=budget - elapsed,
                paused=rule.pausable and met is None and pause_open,
            ))
        return out
