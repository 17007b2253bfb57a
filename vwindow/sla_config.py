"""The ``[sla]`` configuration section: business calendar, rule sets and which service
items use which rule set (see :mod:`vwindow.sla` for the clocks themselves)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from functools import cached_property
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from vwindow.errors import ConfigError, VWindowError
from vwindow.sla import (
    BUILTIN_RULE_SETS,
    DEFAULT_PERIODS,
    DEFAULT_TIMEZONE,
    RULE_KEY,
    WEEKDAYS,
    BusinessCalendar,
    Clock,
    DurationError,
    Period,
    SlaClock,
    SlaRule,
    SlaRuleSet,
    UnknownRuleSetError,
    Weekday,
    parse_duration,
)


def _parse_dates(values: Iterable[str], name: str) -> frozenset[date]:
    days: set[date] = set()
    for value in values:
        first, sep, last = value.partition("..")
        try:
            lo = date.fromisoformat(first.strip())
            hi = date.fromisoformat(last.strip()) if sep else lo
        except ValueError as err:
            raise ConfigError(f"{name}: bad date {value!r}: use 'YYYY-MM-DD' or "
                              "'YYYY-MM-DD..YYYY-MM-DD'", field=name) from err
        if not lo <= hi <= lo + timedelta(days=366):
            raise ConfigError(f"{name}: range {value!r} must run forward, at most a year",
                              field=name)
        days.update(lo + timedelta(days=i) for i in range((hi - lo).days + 1))
    return frozenset(days)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlaMilestoneConfig(_Section):
    """One milestone in ``[[sla.rule_sets.<name>]]``."""

    key: str
    within: str
    """``"0"``, ``"30m"``, ``"2h"``, ``"5d"`` (working days on a business clock), ``"1d4h"``."""
    clock: Clock = "business"
    warn_at: float = Field(default=0.8, gt=0, le=1)
    pausable: bool = False

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not RULE_KEY.fullmatch(value):
            raise ValueError(f"milestone key {value!r} must be lower_snake_case")
        return value

    @field_validator("within")
    @classmethod
    def _within(cls, value: str) -> str:
        try:
            parse_duration(value)
        except DurationError as err:
            raise ValueError(err.message) from err
        return value

    def rule(self) -> SlaRule:
        days, part = parse_duration(self.within)
        return SlaRule(self.key, part, clock=self.clock, warn_at=self.warn_at, days=days,
                       pausable=self.pausable)


class SlaConfig(_Section):
    """``[sla]``: the office calendar, rule sets, and which items use which rule set.

    Defaults: Asia/Shanghai, Monday–Friday 08:30–12:00 and 14:30–17:30, no holidays (see
    ``EXAMPLE_HOLIDAYS_2026`` for the format), the built-in rule sets "12345" and "default".
    """

    timezone: str = DEFAULT_TIMEZONE
    always_open: bool = False
    """24×7: business time is calendar time (a self-service or hotline desk)."""
    weekdays: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")
    periods: tuple[str, ...] = DEFAULT_PERIODS
    """Working periods of a standard day, ``"HH:MM-HH:MM"``; also used on make-up days."""
    weekday_periods: dict[Weekday, tuple[str, ...]] = Field(default_factory=dict)
    """Per-weekday overrides, e.g. ``sat = ["09:00-12:00"]``; an empty list closes the day."""
    holidays: tuple[str, ...] = ()
    """Dates off, ``"YYYY-MM-DD"`` or an inclusive range ``"YYYY-MM-DD..YYYY-MM-DD"``."""
    workdays: tuple[str, ...] = ()
    """Make-up working days (调休), same format."""
    rule_sets: dict[str, tuple[SlaMilestoneConfig, ...]] = Field(default_factory=dict)
    """Extra rule sets; one named "12345" or "default" replaces the built-in."""
    default_rule_set: str = "default"
    items: dict[str, str] = Field(default_factory=dict)
    """Service item code → rule set name (checked first)."""
    categories: dict[str, str] = Field(default_factory=dict)
    """Item category → rule set name (checked second)."""

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown timezone {value!r} (e.g. 'Asia/Shanghai')") from err
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SlaConfig:
        try:
            self.calendar()
            sets = self.rule_sets_by_name
        except VWindowError as err:
            raise ValueError(err.message) from err
        wanted = [("default_rule_set", self.default_rule_set)]
        wanted += [(f"items.{k}", v) for k, v in self.items.items()]
        wanted += [(f"categories.{k}", v) for k, v in self.categories.items()]
        for where, name in wanted:
            if name not in sets:
                raise ValueError(f"{where}: unknown rule set {name!r} (have {sorted(sets)})")
        return self

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SlaConfig:
        """Validate a ``[sla]`` table; errors become ``ConfigError`` naming key and value."""
        try:
            return cls.model_validate(dict(data))
        except PydanticValidationError as err:
            first = err.errors()[0]
            where = ".".join(["sla", *(str(p) for p in first["loc"])])
            if first["type"] == "extra_forbidden":
                raise ConfigError(f"unknown config key {where!r}", field=where) from err
            raise ConfigError(f"config key {where!r}: {first['msg']} "
                              f"(got {first.get('input')!r})", field=where) from err

    def calendar(self) -> BusinessCalendar:
        """The office calendar."""
        return self._calendar

    @cached_property
    def _calendar(self) -> BusinessCalendar:
        tz = ZoneInfo(self.timezone)
        if self.always_open:
            return BusinessCalendar.around_the_clock(tz)
        day = tuple(Period.parse(p) for p in self.periods)
        week = tuple(
            tuple(Period.parse(p) for p in self.weekday_periods[name])
            if name in self.weekday_periods else (day if name in self.weekdays else ())
            for name in WEEKDAYS
        )
        return BusinessCalendar(tz=tz, week=week, workday_periods=day,
                                holidays=_parse_dates(self.holidays, "holidays"),
                                workdays=_parse_dates(self.workdays, "workdays"))

    def clock(self) -> SlaClock:
        return SlaClock(self.calendar())

    @cached_property
    def rule_sets_by_name(self) -> Mapping[str, SlaRuleSet]:
        """Built-in rule sets, overlaid by the configured ones."""
        sets = {rule_set.name: rule_set for rule_set in BUILTIN_RULE_SETS}
        for name, milestones in self.rule_sets.items():
            sets[name] = SlaRuleSet(name, tuple(m.rule() for m in milestones))
        return MappingProxyType(sets)

    def rule_set(self, name: str) -> SlaRuleSet:
        sets = self.rule_sets_by_name
        if name not in sets:
            raise UnknownRuleSetError(f"unknown SLA rule set {name!r} (have {sorted(sets)})",
                                      field="rule_set")
        return sets[name]

    def rule_set_for(self, item_code: str | None = None, category: str | None = None
                     ) -> SlaRuleSet:
        """The rule set of a service item: by item code, else by category, else the default."""
        if item_code is not None and item_code in self.items:
            return self.rule_set(self.items[item_code])
        if category is not None and category in self.categories:
            return self.rule_set(self.categories[category])
        return self.rule_set(self.default_rule_set)
