"""The database schema as SQLAlchemy 2 declarative models.

The schema itself is created and changed only by the Alembic migrations in
``vwindow/migrations``; these classes must stay in step with them (a test compares).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Role(enum.StrEnum):
    KIOSK = "kiosk"
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    SURVEYOR = "surveyor"


class CallStatus(enum.StrEnum):
    QUEUED = "queued"
    LIVE = "live"
    ENDED = "ended"
    CANCELLED = "cancelled"


class CaseStatus(enum.StrEnum):
    """Where a case stands; the allowed moves between them are in ``vwindow.case_flow``."""

    RECEIVED = "received"
    DISPATCHED = "dispatched"
    """Handed by the front desk to the back office (中台分派)."""
    IN_PROGRESS = "in_progress"
    RETURNED = "returned"
    """Returned to the citizen for more material (补正); the result clock is paused."""
    BOOKED = "booked"
    """Booked for a visit to a service hall's window (预约办)."""
    COMPLETED = "completed"
    REJECTED = "rejected"


class Township(Base):
    __tablename__ = "townships"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    county: Mapped[str] = mapped_column(String(100))
    distance_km: Mapped[float] = mapped_column(default=0.0)
    """One way by road to the county seat: an answered call saves the citizen twice this
    (the travel-saved figure of the field reports, vwindow/stats.py)."""
    travel_minutes: Mapped[int] = mapped_column(default=0)
    """The time the one-way trip to the county seat takes, in minutes."""
    default_dialect: Mapped[str | None] = mapped_column(String(32))


class Kiosk(Base):
    __tablename__ = "kiosks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    township_id: Mapped[int] = mapped_column(ForeignKey("townships.id"))
    key_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(default=True)


class User(Base):
    """A county/city agent or a supervisor."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(16), default="county")
    dialects: Mapped[list[str]] = mapped_column(JSON, default=list)
    skills: Mapped[list[str]] = mapped_column(JSON, default=list)
    county: Mapped[str | None] = mapped_column(String(100))
    """County a county-level agent serves (pairing); empty for city agents."""
    active: Mapped[bool] = mapped_column(default=True)


class ServiceItem(Base):
    __tablename__ = "service_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    department: Mapped[str] = mapped_column(String(100))
    category: Mapped[str] = mapped_column(String(64))
    required_materials: Mapped[list[str]] = mapped_column(JSON, default=list)
    """Names of the item's materials (kept for older readers; ``material_rules`` rules)."""
    questions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    """Situation questions (情形问答), as ``vwindow.catalog.SituationQuestion`` dicts."""
    material_rules: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    """Materials with keys and conditions, as ``vwindow.catalog.MaterialRule`` dicts."""
    instant_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    aliases: Mapped[list[str]] = mapped_column(JSON, default=list)
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)


class Case(Base):
    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    service_item_id: Mapped[int] = mapped_column(ForeignKey("service_items.id"))
    kiosk_id: Mapped[int] = mapped_column(ForeignKey("kiosks.id"))
    township_id: Mapped[int] = mapped_column(ForeignKey("townships.id"))
    status: Mapped[str] = mapped_column(String(24), default=CaseStatus.RECEIVED)
    assigned_agent_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    answers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    """Situation answers, question key → chosen option."""
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome_note: Mapped[str | None] = mapped_column(Text)
    """Why the case ended as it did (the reason of the last transition)."""


class Call(Base):
    """One video call (a session once answered) on a case."""

    __tablename__ = "calls"
    __table_args__ = (
        # The routing pass reads the first few waiting calls in serving order (priority
        # high first, then longest waiting): with this it stops after them instead of
        # sorting every waiting call on every pass.
        Index("ix_calls_waiting", text("priority DESC"), "queued_at", "id",
              postgresql_where=text("status = 'queued'"),
              sqlite_where=text("status = 'queued'")),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    kiosk_id: Mapped[int] = mapped_column(ForeignKey("kiosks.id"), index=True)
    service_item_id: Mapped[int] = mapped_column(ForeignKey("service_items.id"))
    status: Mapped[str] = mapped_column(String(16), default=CallStatus.QUEUED, index=True)
    dialect: Mapped[str | None] = mapped_column(String(32))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    hub_node: Mapped[str | None] = mapped_column(String(64))
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_by: Mapped[str | None] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(64))
    """Skill needed to take the call: the item's category, or the queue it was sent to."""
    priority: Mapped[int] = mapped_column(Integer, default=0)
    offered_to: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    offer_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    excluded: Mapped[list[int]] = mapped_column(JSON, default=list)
    """Agents who declined the call: it is not offered to them again."""
    callback: Mapped[bool] = mapped_column(default=False)
    """The kiosk stopped waiting on screen: an agent calls it back when free."""
    elderly: Mapped[bool] = mapped_column(default=False)
    """The caller is elderly (birth date at call start, or an ID card read while the call
    waited): the elderly priority boost was given, once."""
    callback_offered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reserved_for: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    """A transfer to a named agent: only that agent is offered the call until it lapses."""
    reserved_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CaseNote(Base):
    """A note on a case (a transfer's hand-over note, the back office's remarks)."""

    __tablename__ = "case_notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id"))
    kind: Mapped[str] = mapped_column(String(16))
    author: Mapped[str] = mapped_column(String(64))
    author_name: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AppointmentSlot(Base):
    """A window time at a service hall that citizens can be booked into."""

    __tablename__ = "appointment_slots"
    __table_args__ = (CheckConstraint("booked >= 0 AND booked <= capacity",
                                      name="ck_slot_capacity"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hall: Mapped[str] = mapped_column(String(100))
    service_item_id: Mapped[int | None] = mapped_column(ForeignKey("service_items.id"))
    """None: any service item."""
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    capacity: Mapped[int] = mapped_column(Integer)
    booked: Mapped[int] = mapped_column(Integer, default=0)


class Appointment(Base):
    """A citizen's booking (with the case and its materials) for one slot."""

    __tablename__ = "appointments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    slot_id: Mapped[int] = mapped_column(ForeignKey("appointment_slots.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    active_case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), unique=True)
    """The case while the booking stands (NULL once cancelled): one booking per case."""
    status: Mapped[str] = mapped_column(String(16), default="booked")
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AgentStatus(Base):
    """An agent's working state, shared by every node (the router reads it)."""

    __tablename__ = "agent_status"
    agent_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default="offline")
    reason: Mapped[str | None] = mapped_column(String(100))
    node_id: Mapped[str | None] = mapped_column(String(64))
    since: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    idle_since: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_offer_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    wrap_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Node(Base):
    """A running ``vwindow serve`` process; a lapsed heartbeat means it died."""

    __tablename__ = "nodes"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Participant(Base):
    __tablename__ = "participants"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    principal: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CallInvitation(Base):
    """An agent invited into a live call (the city expert); grants access to the case."""

    __tablename__ = "call_invitations"
    __table_args__ = (UniqueConstraint("call_id", "agent_id", name="uq_invitation_call_agent"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    invited_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    joined_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Material(Base):
    __tablename__ = "materials"
    __table_args__ = (UniqueConstraint("case_id", "sha256", name="uq_material_case_sha"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id"))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(100))
    filename: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16), default="file", server_default="file")
    """file, original (a camera still as taken), page (a scanned page), document (the
    PDF of a document's pages so far), snapshot, recording."""
    document: Mapped[str | None] = mapped_column(String(64))
    page: Mapped[int | None] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Upload(Base):
    """A resumable upload in progress; its bytes so far are a file in the store's
    ``uploads/`` folder, whose length is the offset."""

    __tablename__ = "uploads"
    __table_args__ = (UniqueConstraint("case_id", "sha256", name="uq_upload_case_sha"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id"))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(100))
    filename: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    document: Mapped[str | None] = mapped_column(String(64))
    page: Mapped[int | None] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ScannedCode(Base):
    """A QR/barcode payload read at the kiosk (scanner or document camera)."""

    __tablename__ = "scanned_codes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id"))
    source: Mapped[str] = mapped_column(String(32))
    symbology: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(String(32))
    """What the payload looks like: booking (a vwindow booking code), url, licence
    (a unified social credit code), text."""
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class IdRead(Base):
    """One ID-card read at the kiosk. Lists and logs show the number masked; the full
    number leaves only through an audited reveal."""

    __tablename__ = "id_reads"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id"))
    card_type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(120))
    gender: Mapped[str] = mapped_column(String(8))
    nation: Mapped[str] = mapped_column(String(32))
    birth_date: Mapped[str] = mapped_column(String(10))
    address: Mapped[str] = mapped_column(String(200))
    number: Mapped[str] = mapped_column(String(32))
    number_valid: Mapped[bool] = mapped_column(Boolean)
    authority: Mapped[str] = mapped_column(String(100))
    valid_from: Mapped[str] = mapped_column(String(10))
    valid_to: Mapped[str] = mapped_column(String(10))
    photo_sha256: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Rating(Base):
    __tablename__ = "ratings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"), unique=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    stars: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SurveyorLink(Base):
    __tablename__ = "surveyor_links"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"))
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    inspection_id: Mapped[int | None] = mapped_column(Integer)
    """The inspection the link was made for (links made before inspections: none)."""


class AuditEntry(Base):
    """Append-only, hash-chained: ``hash = sha256(prev_hash + canonical row)``."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)


class CaseMilestone(Base):
    """When a case first met an SLA milestone (first response, feedback, result)."""

    __tablename__ = "case_milestones"
    __table_args__ = (UniqueConstraint("case_id", "key", name="uq_milestone_case_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(64))


class CasePause(Base):
    """A stretch of time the case waited for the citizen's material (补正); open while
    ``ended_at`` is NULL. Pausable SLA milestones do not count it."""

    __tablename__ = "case_pauses"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_by: Mapped[str] = mapped_column(String(64))
    ended_by: Mapped[str | None] = mapped_column(String(64))


class MaterialTag(Base):
    """The checklist entry (a material rule key of the case's item) an agent says a
    material is; one per material, replaced when re-tagged."""

    __tablename__ = "material_tags"
    material_id: Mapped[int] = mapped_column(ForeignKey("materials.id"), primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    material_type: Mapped[str] = mapped_column(String(64))
    tagged_by: Mapped[str] = mapped_column(String(64))
    tagged_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Inspection(Base):
    """A remote site inspection (远程踏勘) of a case, done over one call."""

    __tablename__ = "inspections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"))
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    site_address: Mapped[str] = mapped_column(String(200), default="")
    site_lat: Mapped[float | None] = mapped_column(Float)
    site_lon: Mapped[float | None] = mapped_column(Float)
    checklist: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    """[{key, text, state: pending|pass|fail|na, note, evidence: [material ids]}]"""
    conclusion: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="open")
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    report_material_id: Mapped[int | None] = mapped_column(ForeignKey("materials.id"))


class InspectionEvidence(Base):
    """A stamped snapshot of an inspection, with where the surveyor stood."""

    __tablename__ = "inspection_evidence"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    inspection_id: Mapped[int] = mapped_column(ForeignKey("inspections.id"), index=True)
    material_id: Mapped[int] = mapped_column(ForeignKey("materials.id"))
    annotated_from: Mapped[int | None] = mapped_column(ForeignKey("materials.id"))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    accuracy: Mapped[float | None] = mapped_column(Float)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class JobRun(Base):
    """When a periodic job of the installation last ran (the retention purge), so that
    its schedule survives restarts of the nodes; one row per job."""

    __tablename__ = "job_runs"
    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_run_at: Mapped[datetime] = mapped_column(UTCDateTime())
