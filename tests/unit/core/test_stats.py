"""The supervisor's figures, computed over hand-made calls and ratings with chosen
timestamps, on real SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import pg_database
from vwindow import stats
from vwindow.db import Database
from vwindow.models import (
    Call,
    CallStatus,
    Case,
    CaseStatus,
    Kiosk,
    Rating,
    Role,
    ServiceItem,
    Township,
    User,
)

SH = ZoneInfo("Asia/Shanghai")
DAY = date(2025, 3, 10)  # a Monday


def at(hhmmss: str, day: date = DAY) -> datetime:
    """A local (Shanghai) time on ``day``."""
    h, m, s = (int(x) for x in hhmmss.split(":"))
    return datetime(day.year, day.month, day.day, h, m, s, tzinfo=SH)


@dataclass
class World:
    db: Database
    town_a: int
    town_b: int
    kiosk_a: int
    kiosk_b: int
    item: int
    agent1: int
    agent2: int


async def make_world(db: Database, prefix: str = "S") -> World:
    """Two townships (A: 62 km / 95 min, B: 30 km / 40 min), a kiosk in each, two agents."""
    async with db.session() as s:
        a = Township(code=f"{prefix}A", name="甲镇", county="测试县", distance_km=62.0,
                     travel_minutes=95)
        b = Township(code=f"{prefix}B", name="乙乡", county="测试县", distance_km=30.0,
                     travel_minutes=40)
        item = ServiceItem(code=f"{prefix}-1", name="测试事项", department="县局",
                           category="social_security", required_materials=[])
        s.add_all([a, b, item])
        await s.flush()
        ka = Kiosk(code=f"{prefix}-ka", name="甲镇1号机", township_id=a.id, key_hash="x")
        kb = Kiosk(code=f"{prefix}-kb", name="乙乡1号机", township_id=b.id, key_hash="x")
        u1 = User(username=f"{prefix.lower()}agent1", display_name="王芳", role=Role.AGENT,
                  password_hash="x")
        u2 = User(username=f"{prefix.lower()}agent2", display_name="李强", role=Role.AGENT,
                  password_hash="x")
        s.add_all([ka, kb, u1, u2])
        await s.flush()
        return World(db, a.id, b.id, ka.id, kb.id, item.id, u1.id, u2.id)


async def add_call(s: AsyncSession, w: World, kiosk: int, queued: datetime, *,
                   answered: datetime | None = None, ended: datetime | None = None,
                   status: CallStatus, agent: int | None = None,
                   stars: int | None = None) -> Call:
    town = w.town_a if kiosk == w.kiosk_a else w.town_b
    case = Case(number=f"T{queued:%Y%m%d%H%M%S}-{kiosk}", service_item_id=w.item,
                kiosk_id=kiosk, township_id=town, status=CaseStatus.IN_PROGRESS,
                assigned_agent_id=agent, created_at=queued)
    s.add(case)
    await s.flush()
    call = Call(case_id=case.id, kiosk_id=kiosk, service_item_id=w.item, status=status,
                agent_id=agent, queued_at=queued, answered_at=answered, ended_at=ended,
                ended_by="agent" if status == CallStatus.ENDED else None)
    s.add(call)
    await s.flush()
    if stars is not None:
        s.add(Rating(case_id=case.id, call_id=call.id, agent_id=agent, stars=stars,
                     comment="", created_at=ended or queued))
    return call


async def add_the_day(w: World) -> None:
    """The calls of ``DAY`` whose figures the tests check (see each comment)."""
    a, b = w.kiosk_a, w.kiosk_b
    async with w.db.session() as s:
        # 1: A, waits 10 s, talks 600 s, agent1, 5 stars.
        await add_call(s, w, a, at("09:00:00"), answered=at("09:00:10"),
                       ended=at("09:10:10"), status=CallStatus.ENDED, agent=w.agent1, stars=5)
        # 2: A, waits exactly 20 s (within the service level), talks 600 s, agent2, 4 stars.
        await add_call(s, w, a, at("09:00:05"), answered=at("09:00:25"),
                       ended=at("09:10:25"), status=CallStatus.ENDED, agent=w.agent2, stars=4)
        # 3: B, waits 60 s, talks 1200 s, agent1, 2 stars.
        await add_call(s, w, b, at("09:10:00"), answered=at("09:11:00"),
                       ended=at("09:31:00"), status=CallStatus.ENDED, agent=w.agent1, stars=2)
        # 4: B, withdrawn after 2 minutes: abandoned.
        await add_call(s, w, b, at("09:20:00"), ended=at("09:22:00"),
                       status=CallStatus.CANCELLED)
        # 5: A, waits 30 s, still live (answered, not handled yet), agent2.
        await add_call(s, w, a, at("10:00:00"), answered=at("10:00:30"),
                       status=CallStatus.LIVE, agent=w.agent2)
        # 6: A, still waiting.
        await add_call(s, w, a, at("10:05:00"), status=CallStatus.QUEUED)
        # 7: queued the evening before, answered after midnight: yesterday's call, 1 star.
        await add_call(s, w, a, at("23:59:00", DAY - timedelta(days=1)),
                       answered=at("00:00:30"), ended=at("00:10:30"),
                       status=CallStatus.ENDED, agent=w.agent1, stars=1)
        # 8: the next day's first call.
        await add_call(s, w, b, at("00:00:00", DAY + timedelta(days=1)),
                       status=CallStatus.QUEUED)
        # 9: A, waits 5 s, then transferred: queued again, answered_at kept.
        await add_call(s, w, a, at("11:00:00"), answered=at("11:00:05"),
                       status=CallStatus.QUEUED, agent=w.agent2)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    if request.param == "postgres":
        url = pg_database(request.getfixturevalue("pg_server"))
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'stats.db'}"
    db = Database(url)
    await db.start()
    try:
        w = await make_world(db)
        await add_the_day(w)
        yield w
    finally:
        await db.stop()


async def test_day_figures(world: World) -> None:
    f = await stats.day_figures(world.db, DAY, service_level_s=20, tz=SH)
    assert (f.offered, f.answered, f.abandoned, f.waiting) == (7, 5, 1, 1)
    assert f.answered_within == 3  # calls 1, 2 (exactly 20 s) and 9
    assert f.service_level_pct == pytest.approx(50.0)  # 3 of 5 answered + 1 abandoned
    assert f.asa_s == pytest.approx((10 + 20 + 60 + 30 + 5) / 5, abs=0.01)
    assert f.handled == 3
    assert f.aht_s == pytest.approx(800.0, abs=0.01)
    assert f.talk_hours == pytest.approx(2400 / 3600, abs=1e-4)
    assert f.ratings == 3
    assert f.csat_avg == pytest.approx(11 / 3)
    assert f.csat_top_pct == pytest.approx(200 / 3)
    # 4 answered calls from A (62 km, 95 min) and 1 from B (30 km, 40 min), both ways.
    assert f.travel_km == pytest.approx(2 * (4 * 62 + 30))
    assert f.travel_hours == pytest.approx(2 * (4 * 95 + 40) / 60)
    assert f.start == at("00:00:00") and f.end == at("00:00:00", DAY + timedelta(days=1))


async def test_a_stricter_service_level(world: World) -> None:
    f = await stats.day_figures(world.db, DAY, service_level_s=10, tz=SH)
    assert f.answered_within == 2  # 10 s and 5 s
    assert f.service_level_pct == pytest.approx(100 * 2 / 6)


async def test_an_empty_day(world: World) -> None:
    f = await stats.day_figures(world.db, DAY - timedelta(days=30), tz=SH)
    assert (f.offered, f.answered, f.ratings, f.travel_km) == (0, 0, 0, 0.0)
    assert f.service_level_pct is None and f.asa_s is None and f.csat_avg is None


async def test_township_summaries(world: World) -> None:
    rows = await stats.township_summaries(world.db, stats.period(DAY, DAY, SH))
    by_name = {r.name: r for r in rows}
    a, b = by_name["甲镇"], by_name["乙乡"]
    assert (a.offered, a.answered, a.abandoned, a.waiting, a.answered_within) == (5, 4, 0, 1, 3)
    assert a.service_level_pct == pytest.approx(75.0)
    assert a.asa_s == pytest.approx((10 + 20 + 30 + 5) / 4, abs=0.01)
    assert (a.handled, a.ratings) == (2, 2)
    assert a.aht_s == pytest.approx(600.0, abs=0.01)
    assert (a.csat_avg, a.csat_top_pct) == (pytest.approx(4.5), pytest.approx(100.0))
    assert a.travel_km == pytest.approx(4 * 2 * 62)
    assert a.travel_hours == pytest.approx(4 * 2 * 95 / 60)
    assert (b.offered, b.answered, b.abandoned, b.waiting) == (2, 1, 1, 0)
    assert b.service_level_pct == pytest.approx(0.0)
    assert (b.csat_avg, b.csat_top_pct) == (pytest.approx(2.0), pytest.approx(0.0))
    assert b.travel_km == pytest.approx(60.0)
    # Townships without calls in the range are listed too, with zeros.
    two_days = await stats.township_summaries(
        world.db, stats.period(DAY - timedelta(days=1), DAY, SH))
    assert {r.name: r.offered for r in two_days}["甲镇"] == 6


async def test_agent_summaries(world: World) -> None:
    rows = await stats.agent_summaries(world.db, stats.period(DAY, DAY, SH))
    assert [r.name for r in rows] == ["李强", "王芳"]  # the busier first
    li, wang = rows
    assert (li.answered, li.answered_within, li.handled, li.ratings) == (3, 2, 1, 1)
    assert li.asa_s == pytest.approx((20 + 30 + 5) / 3, abs=0.01)
    assert li.aht_s == pytest.approx(600.0, abs=0.01)
    assert li.csat_avg == pytest.approx(4.0)
    assert li.travel_km == pytest.approx(3 * 124)
    assert (wang.answered, wang.handled, wang.ratings) == (2, 2, 2)
    assert wang.aht_s == pytest.approx(900.0, abs=0.01)
    assert (wang.csat_avg, wang.csat_top_pct) == (pytest.approx(3.5), pytest.approx(50.0))
    assert wang.talk_hours == pytest.approx(1800 / 3600, abs=1e-4)


async def test_queue_over_a_whole_day(world: World) -> None:
    series = await stats.queue_over_day(world.db, DAY, 15, tz=SH,
                                        now=at("12:00:00", DAY + timedelta(days=2)))
    assert len(series.buckets) == 96
    by_time = {b.start.astimezone(SH).strftime("%H:%M"): b for b in series.buckets}
    # Yesterday's last caller was waiting at midnight and answered after 90 s.
    first = by_time["00:00"]
    assert (first.peak, first.waiting, first.answered) == (1, 0, 1)
    assert first.wait_median_s == pytest.approx(90.0, abs=0.01)
    # Calls 1 and 2 wait at the same time; 1, 2 and 3 are answered in this bucket.
    nine = by_time["09:00"]
    assert (nine.peak, nine.waiting, nine.answered) == (2, 0, 3)
    assert nine.wait_median_s == pytest.approx(20.0, abs=0.01)
    assert nine.wait_p90_s == pytest.approx(60.0, abs=0.01)
    assert (by_time["09:15"].peak, by_time["09:15"].answered) == (1, 0)
    assert by_time["09:15"].wait_median_s is None
    # From 10:05 call 6 waits for the rest of the day; at 11:00 call 9 joins it briefly.
    assert (by_time["10:00"].peak, by_time["10:00"].waiting, by_time["10:00"].answered) == (
        1, 1, 1)
    assert (by_time["11:00"].peak, by_time["11:00"].waiting) == (2, 1)
    assert by_time["23:45"].waiting == 1
    assert by_time["08:45"].peak == 0


async def test_queue_over_today_stops_now(world: World) -> None:
    series = await stats.queue_over_day(world.db, DAY, 30, tz=SH, now=at("10:10:00"))
    assert len(series.buckets) == 21  # 00:00 … 10:00
    last = series.buckets[-1]
    assert last.start == at("10:00:00")
    assert (last.waiting, last.peak, last.answered) == (1, 1, 1)


async def test_csat_by_week(world: World) -> None:
    weeks = await stats.csat_by_week(world.db, 3, until=DAY + timedelta(days=3), tz=SH)
    assert [w.week_start for w in weeks] == [date(2025, 2, 24), date(2025, 3, 3), DAY]
    assert [w.ratings for w in weeks] == [0, 1, 3]
    assert weeks[0].csat_avg is None and weeks[0].csat_top_pct is None
    assert (weeks[1].csat_avg, weeks[1].csat_top_pct) == (1.0, 0.0)  # Sunday's call
    assert weeks[2].csat_avg == pytest.approx(11 / 3)
    assert weeks[2].csat_top_pct == pytest.approx(200 / 3)


def test_periods_are_checked() -> None:
    p = stats.period(date(2024, 1, 1), date(2024, 12, 31), SH)
    assert p.days == 366
    with pytest.raises(stats.DateRangeError) as err:
        stats.period(date(2024, 1, 1), date(2025, 1, 1), SH)
    assert err.value.field == "to" and "367 days" in err.value.message
    with pytest.raises(stats.DateRangeError) as err:
        stats.period(DAY, DAY - timedelta(days=1), SH)
    assert err.value.field == "to" and "before" in err.value.message


async def test_bad_bucket_and_weeks_are_named(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    await db.start()
    try:
        with pytest.raises(stats.DateRangeError) as err:
            await stats.queue_over_day(db, DAY, 7)
        assert err.value.field == "bucket_minutes"
        with pytest.raises(stats.DateRangeError) as err:
            await stats.csat_by_week(db, 0)
        assert err.value.field == "weeks"
    finally:
        await db.stop()
