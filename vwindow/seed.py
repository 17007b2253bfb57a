"""Demo data: the shipped catalog, a township with a kiosk, county and city agents, a supervisor.

The catalog (``vwindow/catalog_data/items.json``, which includes the five demo codes of
``CATALOG``) is loaded on every seed: missing items are added and items without material
rules (rows from before migration 0007) are filled in; items a county edited stay.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from vwindow.auth import hash_secret
from vwindow.catalog import default_items
from vwindow.catalog_store import upsert_items
from vwindow.db import Database
from vwindow.models import AppointmentSlot, Kiosk, Role, ServiceItem, Township, User

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoLogins:
    kiosk_code: str = "kiosk-tx01"
    kiosk_key: str = "demo-kiosk-key"
    agents: tuple[str, ...] = ("agent1", "agent2", "agent3")
    supervisor: str = "super1"
    password: str = "demo1234"


DEMO = DemoLogins()

CATALOG: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    ("SB-001", "城乡居民养老保险待遇资格认证", "县人社局", "social_security",
     ("居民身份证",)),
    ("SB-002", "城乡居民医疗保险参保登记", "县医保局", "medical_insurance",
     ("居民身份证", "户口簿")),
    ("SC-001", "个体工商户设立登记", "县市场监管局", "market",
     ("居民身份证", "经营场所证明")),
    ("MZ-001", "最低生活保障申请", "县民政局", "civil_affairs",
     ("居民身份证", "户口簿", "收入证明")),
    ("GT-001", "农村宅基地和建房（规划许可）审批", "县自然资源局", "land",
     ("居民身份证", "宅基地申请书", "现场照片")),
)


async def seed_catalog(db: Database) -> None:
    """Load the shipped catalog (idempotent; never overwrites an item's rules)."""
    items = default_items()
    async with db.session() as s:
        await upsert_items(s, items, "system:seed", overwrite=False)
        # Demo codes the shipped file lacks (it has all five today) still get a row.
        codes = {i.code for i in items}
        have = set((await s.scalars(select(ServiceItem.code))).all())
        for code, name, dept, cat, mats in CATALOG:
            if code not in codes and code not in have:
                s.add(ServiceItem(code=code, name=name, department=dept, category=cat,
                                  required_materials=list(mats)))


async def seed_demo(db: Database) -> DemoLogins:
    """Insert the demo data once (idempotent)."""
    await seed_catalog(db)
    async with db.session() as s:
        if (await s.scalars(select(Kiosk).where(Kiosk.code == DEMO.kiosk_code))).first():
            return DEMO
        town = Township(code="TX", name="汤口镇", county="黄山区", distance_km=62.0,
                        travel_minutes=95)
        s.add(town)
        await s.flush()
        s.add(Kiosk(code=DEMO.kiosk_code, name="汤口镇便民服务中心 1 号机", township_id=town.id,
                    key_hash=hash_secret(DEMO.kiosk_key)))
        pw = hash_secret(DEMO.password)
        s.add(User(username="agent1", display_name="王芳（县政务中心）", role=Role.AGENT,
                   password_hash=pw, level="county", county="黄山区", dialects=["普通话", "徽州话"],
                   skills=["social_security", "medical_insurance", "civil_affairs", "land"]))
        s.add(User(username="agent2", display_name="李强（县政务中心）", role=Role.AGENT,
                   password_hash=pw, level="county", county="黄山区", dialects=["普通话"],
                   skills=["market", "land", "social_security"]))
        s.add(User(username="agent3", display_name="陈静（市政务中心专家）", role=Role.AGENT,
                   password_hash=pw, level="city", dialects=["普通话", "徽州话"],
                   skills=["*"]))
        # Window slots at the county hall for the next working days (预约办).
        shanghai = timezone(timedelta(hours=8))
        today = datetime.now(shanghai).date()
        for days in range(1, 11):
            day = today + timedelta(days=days)
            if day.weekday() >= 5:
                continue
            for hour in (9, 14):
                start = datetime(day.year, day.month, day.day, hour, tzinfo=shanghai)
                s.add(AppointmentSlot(hall="黄山区政务服务中心 综合窗口", starts_at=start,
                                      ends_at=start + timedelta(hours=1), capacity=3,
                                      booked=0))
        s.add(User(username=DEMO.supervisor, display_name="张主任（值班长）",
                   role=Role.SUPERVISOR, password_hash=pw, level="county"))
    logger.info("demo data seeded")
    return DEMO
