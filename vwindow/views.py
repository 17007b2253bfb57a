"""What clients see of calls, cases and materials (JSON-ready pydantic models)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class ServiceRef(BaseModel):
    code: str
    name: str


class KioskRef(BaseModel):
    code: str
    name: str
    township: str


class AgentRef(BaseModel):
    id: int
    name: str


class NoteView(BaseModel):
    id: int
    kind: str
    author_name: str
    text: str
    created_at: datetime


class CallView(BaseModel):
    call_id: int
    case_id: int
    case_number: str
    status: str
    service: ServiceRef
    kiosk: KioskRef
    queued_at: datetime
    answered_at: datetime | None
    agent: AgentRef | None
    dialect: str | None = None
    priority: int = 0
    callback: bool = False
    transfer_note: NoteView | None = None
    """The hand-over note of the latest transfer of this call, for the next agent."""


class MaterialView(BaseModel):
    id: int
    case_id: int
    sha256: str
    size: int
    content_type: str
    filename: str
    source: str
    call_id: int | None = None
    kind: str = "file"
    document: str | None = None
    page: int | None = None
    created_at: datetime
    url: str


class CaseView(BaseModel):
    case_id: int
    number: str
    status: str
    service: ServiceRef
    kiosk: KioskRef
    assigned_agent_id: int | None
    created_at: datetime
    materials: list[MaterialView]
    notes: list[NoteView] = []


class CatalogItem(BaseModel):
    code: str
    name: str
    department: str
    category: str
