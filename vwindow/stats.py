"""Figures for the supervisor: a day's calls (offered, answered, abandoned, service
level, speed of answer, handle time, satisfaction, travel saved), the queue over a day,
satisfaction by week, and per-agent and per-township summaries of a date range.

Every figure is about the calls *offered* in the period, i.e. queued in it (local days
in the office's timezone, ``Asia/Shanghai`` by default): a call that straddles midnight
counts on the day it arrived, so a day's figures keep their meaning once the day is over.

- offered: calls queued in the period. A transfer keeps the same call row, so a
  transferred call is offered (and answered) once.
- answered: offered calls an agent took (``answered_at`` set; a transfer keeps the
  first answer).
- abandoned: offered calls the kiosk withdrew before anyone took them (status
  ``cancelled`` and never answered); this includes a citizen who booked a window visit
  instead of waiting.
- waiting: offered calls still in the queue, never answered.
- service level: answered within ``service_level_s`` seconds of queueing ÷ (answered +
  abandoned), in %. Calls still waiting count once they are settled.
- ASA (average speed of answer): mean of ``answered_at - queued_at`` over answered calls.
- AHT (average handle time): mean of ``ended_at - answered_at`` over ended calls; talk
  time including any transfer, without the agent's wrap-up (not kept per call).
- CSAT: the ratings of offered calls: mean stars, and the share of 4–5 stars in %.
- travel saved: each answered call is a round trip to the county seat the citizen did
  not make: 2 × the township's ``distance_km`` and 2 × its ``travel_minutes``.

A per-agent summary counts a call for the agent who has it last (after a transfer, the
agent it was transferred to). Durations are computed in SQL, to the millisecond.
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any, Final
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, case, extract, func, or_, select

from vwindow.db import Database
from vwindow.errors import VWindowError
from vwindow.models import Call, CallStatus, Case, Rating, Township, User, utcnow
from vwindow.sla import DEFAULT_TIMEZONE

logger = logging.getLogger(__name__)

MAX_RANGE_DAYS: Final = 366
"""The longest date range a summary or export covers (a year, leap day included)."""
MAX_WEEKS: Final = 104
BUCKET_MINUTES: Final = (5, 10, 15, 20, 30, 60)
_EPSILON_S: Final = 0.001
"""SQLite's julianday() arithmetic is exact only to about 0.1 ms: a call answered in
exactly 20 s must count as answered within 20 s."""


class DateRangeError(VWindowError):
    """A date, a range or a period parameter that cannot be used; ``field`` names it."""

    code = "invalid_range"
    http_status = 400


def office_tz() -> tzinfo:
    return ZoneInfo(DEFAULT_TIMEZONE)


@dataclass(frozen=True)
class Period:
    """Local days ``first``..``last`` (both included) in ``tz``, as UTC instants."""

    first: date
    last: date
    tz: tzinfo

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(0), tzinfo=self.tz)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time(0), tzinfo=self.tz)

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


def period(first: date, last: date, tz: tzinfo | None = None, *,
           max_days: int = MAX_RANGE_DAYS) -> Period:
    """A checked period: ``first`` not after ``last``, at most ``max_days`` long."""
    if last < first:
        raise DateRangeError(f"'to' ({last.isoformat()}) is before 'from' "
                             f"({first.isoformat()})", field="to")
    days = (last - first).days + 1
    if days > max_days:
        raise DateRangeError(f"the range {first.isoformat()}..{last.isoformat()} is {days} "
                             f"days; at most {max_days} days at a time", field="to")
    return Period(first, last, tz or office_tz())


def today(tz: tzinfo | None = None, now: datetime | None = None) -> date:
    return (now or utcnow()).astimezone(tz or office_tz()).date()


# -- results -------------------------------------------------------------------------


class CallFigures(BaseModel):
    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    waiting: int = 0
    answered_within: int = 0
    service_level_pct: float | None = None
    asa_s: float | None = None
    handled: int = 0
    aht_s: float | None = None
    talk_hours: float = 0.0
    ratings: int = 0
    csat_avg: float | None = None
    csat_top_pct: float | None = None
    """Share of 4- and 5-star ratings, in %."""
    travel_km: float = 0.0
    travel_hours: float = 0.0


class DayFigures(CallFigures):
    date: date
    timezone: str
    service_level_s: int
    start: datetime
    end: datetime


class AgentSummary(BaseModel):
    agent_id: int
    username: str
    name: str
    level: str
    answered: int
    answered_within: int
    asa_s: float | None
    handled: int
    aht_s: float | None
    talk_hours: float
    ratings: int
    csat_avg: float | None
    csat_top_pct: float | None
    travel_km: float
    travel_hours: float


class TownshipSummary(CallFigures):
    township_id: int
    code: str
    name: str
    county: str
    distance_km: float
    travel_minutes: int


class QueueBucket(BaseModel):
    start: datetime
    waiting: int
    """Calls waiting at the end of the bucket (or now, for the bucket under way)."""
    peak: int
    """Most calls waiting at any moment of the bucket."""
    answered: int
    wait_median_s: float | None
    wait_p90_s: float | None


class QueueSeries(BaseModel):
    date: date
    timezone: str
    bucket_minutes: int
    start: datetime
    end: datetime
    buckets: list[QueueBucket]
    """From the start of the day up to now (all of it for a past day)."""


class CsatWeek(BaseModel):
    week_start: date
    """The Monday of the week."""
    ratings: int
    csat_avg: float | None
    csat_top_pct: float | None


# -- SQL helpers -----------------------------------------------------------------------


def _seconds(db: Database, later: Any, earlier: Any) -> ColumnElement[Any]:
    """``later - earlier`` in seconds, on either database."""
    if db.is_postgres:
        return extract("epoch", later - earlier)
    # SQLite keeps UTC timestamps as text; julianday() reads them.
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _pct(part: int, whole: int) -> float | None:
    return None if whole == 0 else 100.0 * part / whole


def _in(column: Any, p: Period) -> ColumnElement[bool]:
    return and_(column >= p.start, column < p.end)


async def _call_figures(db: Database, p: Period, key: Any,
                        service_level_s: int) -> dict[Any, CallFigures]:
    """The figures of the calls offered in ``p``, grouped by ``key`` (None: one group)."""
    answered = Call.answered_at.is_not(None)
    abandoned = and_(Call.status == CallStatus.CANCELLED, Call.answered_at.is_(None))
    waiting = and_(Call.status == CallStatus.QUEUED, Call.answered_at.is_(None))
    handled = and_(Call.status == CallStatus.ENDED, answered, Call.ended_at.is_not(None))
    wait = _seconds(db, Call.answered_at, Call.queued_at)
    talk = _seconds(db, Call.ended_at, Call.answered_at)
    one = 1
    columns: list[Any] = [
        func.count(Call.id),
        func.sum(case((answered, one), else_=0)),
        func.sum(case((abandoned, one), else_=0)),
        func.sum(case((waiting, one), else_=0)),
        func.sum(case((and_(answered, wait <= service_level_s + _EPSILON_S), one), else_=0)),
        func.avg(case((answered, wait))),
        func.sum(case((handled, one), else_=0)),
        func.avg(case((handled, talk))),
        func.sum(case((handled, talk))),
        func.sum(case((answered, Township.distance_km), else_=0.0)),
        func.sum(case((answered, Township.travel_minutes), else_=0)),
    ]
    head: list[Any] = [key] if key is not None else []
    query = (select(*head, *columns)
             .join(Case, Case.id == Call.case_id)
             .join(Township, Township.id == Case.township_id)
             .where(_in(Call.queued_at, p)))
    rating_query = (select(*head, func.count(Rating.id),
                           func.avg(Rating.stars),
                           func.sum(case((Rating.stars >= 4, one), else_=0)))
                    .join(Call, Call.id == Rating.call_id)
                    .join(Case, Case.id == Call.case_id)
                    .where(_in(Call.queued_at, p)))
    if key is not None:
        query = query.group_by(key)
        rating_query = rating_query.group_by(key)
    async with db.session() as s:
        rows = (await s.execute(query)).all()
        rating_rows = (await s.execute(rating_query)).all()
    out: dict[Any, CallFigures] = {}
    skip = len(head)
    for row in rows:
        group = row[0] if skip else None
        (offered, n_answered, n_abandoned, n_waiting, within, asa, n_handled, aht, talk_s,
         km, minutes) = row[skip:]
        if not offered:
            continue
        n_answered, n_abandoned = int(n_answered or 0), int(n_abandoned or 0)
        within = int(within or 0)
        out[group] = CallFigures(
            offered=int(offered), answered=n_answered, abandoned=n_abandoned,
            waiting=int(n_waiting or 0), answered_within=within,
            service_level_pct=_pct(within, n_answered + n_abandoned),
            asa_s=_float(asa), handled=int(n_handled or 0), aht_s=_float(aht),
            talk_hours=float(talk_s or 0.0) / 3600.0,
            travel_km=2.0 * float(km or 0.0), travel_hours=2.0 * float(minutes or 0) / 60.0)
    for row in rating_rows:
        group = row[0] if skip else None
        count, avg, top = int(row[skip] or 0), row[skip + 1], int(row[skip + 2] or 0)
        if count == 0:
            continue
        figures = out.setdefault(group, CallFigures())
        figures.ratings = count
        figures.csat_avg = _float(avg)
        figures.csat_top_pct = _pct(top, count)
    return out


# -- the public queries ----------------------------------------------------------------


async def day_figures(db: Database, day: date, *, service_level_s: int = 20,
                      tz: tzinfo | None = None) -> DayFigures:
    """The figures of the calls offered on local day ``day`` (see the module docstring)."""
    p = period(day, day, tz)
    figures = (await _call_figures(db, p, None, service_level_s)).get(None, CallFigures())
    return DayFigures(date=day, timezone=str(p.tz), service_level_s=service_level_s,
                      start=p.start, end=p.end, **figures.model_dump())


async def range_figures(db: Database, p: Period, *, service_level_s: int = 20) -> CallFigures:
    """The same figures over a whole period."""
    return (await _call_figures(db, p, None, service_level_s)).get(None, CallFigures())


async def agent_summaries(db: Database, p: Period, *,
                          service_level_s: int = 20) -> list[AgentSummary]:
    """One line per agent who answered a call offered in ``p``, busiest first."""
    by_agent = await _call_figures(db, p, Call.agent_id, service_level_s)
    ids = [k for k in by_agent if k is not None]
    async with db.session() as s:
        users = {u.id: u for u in (await s.scalars(select(User).where(User.id.in_(ids))))}
    out = []
    for agent_id in ids:
        f, user = by_agent[agent_id], users.get(agent_id)
        if user is None:
            continue
        out.append(AgentSummary(
            agent_id=agent_id, username=user.username, name=user.display_name,
            level=user.level, answered=f.answered, answered_within=f.answered_within,
            asa_s=f.asa_s, handled=f.handled, aht_s=f.aht_s, talk_hours=f.talk_hours,
            ratings=f.ratings, csat_avg=f.csat_avg, csat_top_pct=f.csat_top_pct,
            travel_km=f.travel_km, travel_hours=f.travel_hours))
    out.sort(key=lambda a: (-a.answered, a.name))
    return out


async def township_summaries(db: Database, p: Period, *,
                             service_level_s: int = 20) -> list[TownshipSummary]:
    """One line per township (those without calls too), by county and code."""
    by_town = await _call_figures(db, p, Case.township_id, service_level_s)
    async with db.session() as s:
        towns = (await s.scalars(select(Township).order_by(Township.county,
                                                           Township.code))).all()
    return [TownshipSummary(township_id=t.id, code=t.code, name=t.name, county=t.county,
                            distance_km=t.distance_km, travel_minutes=t.travel_minutes,
                            **by_town.get(t.id, CallFigures()).model_dump())
            for t in towns]


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values`` (``q`` in 0..1)."""
    return values[max(0, math.ceil(q * len(values)) - 1)]


async def queue_over_day(db: Database, day: date, bucket_minutes: int = 15, *,
                         tz: tzinfo | None = None, now: datetime | None = None) -> QueueSeries:
    """The queue length and the waits of answered calls, bucket by bucket over ``day``.

    A call waits from ``queued_at`` until it is answered, withdrawn (``ended_at``) or, if
    neither, until now. Re-queueing after a transfer is not kept as timestamps, so the
    wait for the second agent is not in these figures.
    """
    if bucket_minutes not in BUCKET_MINUTES:
        raise DateRangeError(f"bucket_minutes must be one of {list(BUCKET_MINUTES)}, got "
                             f"{bucket_minutes}", field="bucket_minutes")
    p = period(day, day, tz)
    now = now or utcnow()
    start, end = p.start, p.end
    async with db.session() as s:
        rows = (await s.execute(
            select(Call.queued_at, Call.answered_at, Call.ended_at)
            .where(Call.queued_at < end,
                   or_(Call.answered_at >= start,
                       and_(Call.answered_at.is_(None),
                            or_(Call.ended_at.is_(None), Call.ended_at >= start)))))).all()
    # One sweep over the moments the queue grows or shrinks: a busy day is thousands
    # of calls, and this runs on every dashboard refresh.
    events: list[tuple[datetime, int]] = []
    for queued, answered_at, ended_at in rows:
        events.append((queued, 1))
        until = answered_at if answered_at is not None else ended_at
        if until is not None:
            events.append((until, -1))
    events.sort()
    step = timedelta(minutes=bucket_minutes)
    waits: dict[int, list[float]] = {}
    for queued, answered_at, _ in rows:
        if answered_at is not None and start <= answered_at < end:
            waits.setdefault(int((answered_at - start) / step), []).append(
                (answered_at - queued).total_seconds())
    i, count = 0, 0
    while i < len(events) and events[i][0] <= start:
        count += events[i][1]
        i += 1
    buckets = []
    index, at = 0, start
    while at < end and at < now:
        limit = min(at + step, end, now)
        peak = count
        while i < len(events) and events[i][0] < limit:
            moment = events[i][0]
            while i < len(events) and events[i][0] == moment:
                count += events[i][1]
                i += 1
            peak = max(peak, count)
        while i < len(events) and events[i][0] == limit:
            count += events[i][1]
            i += 1
        got = sorted(waits.get(index, []))
        buckets.append(QueueBucket(
            start=at, waiting=count, peak=peak, answered=len(got),
            wait_median_s=statistics.median(got) if got else None,
            wait_p90_s=_percentile(got, 0.9) if got else None))
        index, at = index + 1, at + step
    return QueueSeries(date=day, timezone=str(p.tz), bucket_minutes=bucket_minutes,
                       start=start, end=end, buckets=buckets)


async def csat_by_week(db: Database, weeks: int = 8, until: date | None = None, *,
                       tz: tzinfo | None = None) -> list[CsatWeek]:
    """Satisfaction of the calls offered in each of ``weeks`` weeks (Monday to Sunday),
    the last one the week of ``until`` (default today), oldest first."""
    if not 1 <= weeks <= MAX_WEEKS:
        raise DateRangeError(f"weeks must be 1..{MAX_WEEKS}, got {weeks}", field="weeks")
    zone = tz or office_tz()
    last_day = until or today(zone)
    last_monday = last_day - timedelta(days=last_day.weekday())
    first_monday = last_monday - timedelta(weeks=weeks - 1)
    p = Period(first_monday, last_monday + timedelta(days=6), zone)
    async with db.session() as s:
        rows = (await s.execute(
            select(Call.queued_at, Rating.stars).join(Call, Call.id == Rating.call_id)
            .where(_in(Call.queued_at, p)))).all()
    stars: dict[date, list[int]] = {first_monday + timedelta(weeks=i): [] for i in range(weeks)}
    for queued, n in rows:
        local = queued.astimezone(zone).date()
        stars[local - timedelta(days=local.weekday())].append(int(n))
    return [CsatWeek(week_start=monday, ratings=len(got),
                     csat_avg=sum(got) / len(got) if got else None,
                     csat_top_pct=_pct(sum(1 for n in got if n >= 4), len(got)))
            for monday, got in stars.items()]
