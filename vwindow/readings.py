"""What the kiosk's readers put into a case: ID-card reads and scanned QR/barcodes.

An ID read is stored whole (the back office needs it) but leaves the server masked:
the number as ``3401**********1234``, the name as ``张*明``, the birth date as
``1958-**-**``; an agent on the case sees the full number (and date) only by revealing
it, which is written to the case's audit chain. In a case's list of reads, a role the
``[privacy]`` table allows (``vwindow.permissions``) sees the name, address or birth
date in full; the number stays masked there too. The
server re-checks the number's GB 11643 check character rather than trusting the kiosk.

A scanned code is kept with where it came from (the scanner, or a document-camera
page) and what it looks like: one of our booking codes, a web address, an 18-character
unified social credit code (统一社会信用代码, e.g. from an e-licence), or plain text.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from vwindow import audit
from vwindow.appointments import CODE_ALPHABET, CODE_LENGTH
from vwindow.auth import Principal
from vwindow.db import Database
from vwindow.errors import NotFoundError, ValidationError
from vwindow.models import IdRead, Role, ScannedCode
from vwindow.permissions import MASKED, Disclosure, PrivacyConfig, disclosure
from vwindow.privacy import id_number_checks, mask_id_number
from vwindow.store import FileStore
from vwindow.validation import MAX_DB_ID

logger = logging.getLogger(__name__)

CARD_TYPES: Final = ("resident", "hmt_residence", "foreigner_2017", "foreigner_2023")
_DATE = r"^\d{4}-\d{2}-\d{2}$"


class IdReadIn(BaseModel):
    """An ID-card read as the kiosk's device agent sends it."""

    model_config = ConfigDict(extra="forbid")
    card_type: Literal["resident", "hmt_residence", "foreigner_2017", "foreigner_2023"]
    name: str = Field(max_length=120)
    gender: Literal["male", "female", "unknown", "unspecified"]
    nation: str = Field(default="", max_length=32)
    birth_date: str = Field(pattern=_DATE)
    address: str = Field(default="", max_length=200)
    number: str = Field(min_length=6, max_length=32, pattern=r"^[0-9A-Z]+$")
    authority: str = Field(default="", max_length=100)
    valid_from: str = Field(pattern=_DATE)
    valid_to: str = Field(pattern=r"^(\d{4}-\d{2}-\d{2}|long_term)$")
    photo_wlt_b64: str | None = Field(default=None, max_length=4096)
    call_id: int | None = Field(default=None, ge=1, le=MAX_DB_ID)


class IdReadView(BaseModel):
    """An ID read as lists and the agent console show it: masked, but for the fields the
    ``[privacy]`` table shows the reader's role in full (never the number)."""

    id: int
    case_id: int
    call_id: int | None
    card_type: str
    name: str
    gender: str
    nation: str
    birth_date: str
    address: str
    number_masked: str
    number_valid: bool
    authority: str
    valid_from: str
    valid_to: str
    has_photo: bool
    created_at: datetime


class CodeView(BaseModel):
    id: int
    case_id: int
    call_id: int | None
    source: str
    symbology: str
    text: str
    purpose: str
    created_at: datetime


def id_read_view(r: IdRead, shown: Disclosure = MASKED) -> IdReadView:
    """The read as ``shown`` lets its reader see it (all masked unless told)."""
    return IdReadView(
        id=r.id, case_id=r.case_id, call_id=r.call_id, card_type=r.card_type,
        name=shown.name(r.name), gender=r.gender, nation=r.nation,
        birth_date=shown.birth_date(r.birth_date),
        address=shown.address(r.address), number_masked=shown.id_number(r.number),
        number_valid=r.number_valid, authority=r.authority, valid_from=r.valid_from,
        valid_to=r.valid_to, has_photo=r.photo_sha256 is not None, created_at=r.created_at)


_USCC = re.compile(r"[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}")
_BOOKING = re.compile(f"[{CODE_ALPHABET}]{{{CODE_LENGTH}}}")


def purpose_of(text: str) -> str:
    """What a scanned payload looks like (a hint for the agent, not a verification)."""
    stripped = text.strip()
    if _BOOKING.fullmatch(stripped.upper().replace("-", "")):
        return "booking"
    if re.match(r"(?i)https?://", stripped):
        return "url"
    if _USCC.search(stripped.upper()):
        return "licence"
    return "text"


def code_view(c: ScannedCode) -> CodeView:
    return CodeView(id=c.id, case_id=c.case_id, call_id=c.call_id, source=c.source,
                    symbology=c.symbology, text=c.text, purpose=c.purpose,
                    created_at=c.created_at)


class Readings:
    """ID reads and scanned codes of cases."""

    def __init__(self, db: Database, store: FileStore,
                 privacy: PrivacyConfig | None = None) -> None:
        self.db = db
        self.store = store
        self.privacy = privacy or PrivacyConfig()

    async def add_id_read(self, principal: Principal, case_id: int,
                          data: IdReadIn) -> IdReadView:
        photo_sha: str | None = None
        if data.photo_wlt_b64:
            try:
                photo = base64.b64decode(data.photo_wlt_b64, validate=True)
            except binascii.Error as err:
                raise ValidationError("photo_wlt_b64 is not valid base64",
                                      field="photo_wlt_b64") from err
            photo_sha = await self.store.put(photo)
        valid = data.card_type != "resident" or id_number_checks(data.number)
        async with self.db.session() as s:
            row = IdRead(case_id=case_id, call_id=data.call_id, card_type=data.card_type,
                         name=data.name, gender=data.gender, nation=data.nation,
                         birth_date=data.birth_date, address=data.address,
                         number=data.number, number_valid=valid, authority=data.authority,
                         valid_from=data.valid_from, valid_to=data.valid_to,
                         photo_sha256=photo_sha, created_by=principal.key)
            s.add(row)
            await s.flush()
            await audit.append(s, actor=principal.key, action="idcard.read", case_id=case_id,
                               detail={"id_read_id": row.id,
                                       "number": mask_id_number(data.number),
                                       "card_type": data.card_type, "number_valid": valid})
            view = id_read_view(row)
        logger.info("case %s: ID card read %s (%s)%s", case_id, view.number_masked,
                    data.card_type, "" if valid else " - check character wrong")
        return view

    async def id_reads(self, case_id: int, reader: Role | None = None) -> list[IdReadView]:
        """The case's reads as ``reader``'s role may see them in a list (None: masked)."""
        shown = disclosure(self.privacy, reader, "list")
        async with self.db.session() as s:
            rows = (await s.scalars(select(IdRead).where(IdRead.case_id == case_id)
                                    .order_by(IdRead.id))).all()
            return [id_read_view(r, shown) for r in rows]

    async def get_id_read(self, read_id: int) -> IdRead:
        async with self.db.session() as s:
            row = await s.get(IdRead, read_id)
        if row is None:
            raise NotFoundError(f"ID read {read_id} does not exist", field="id_read_id")
        return row

    async def reveal(self, principal: Principal, row: IdRead, reason: str) -> dict[str, str]:
        """The full number, name, address and birth date for an agent on the case; the
        reveal is audited."""
        async with self.db.session() as s:
            await audit.append(s, actor=principal.key, action="idcard.revealed",
                               case_id=row.case_id,
                               detail={"id_read_id": row.id, "reason": reason,
                                       "number": mask_id_number(row.number)})
        logger.info("case %s: %s revealed ID read %s", row.case_id, principal.key, row.id)
        return {"number": row.number, "name": row.name, "address": row.address,
                "birth_date": row.birth_date}

    async def add_code(self, principal: Principal, case_id: int, *, text: str,
                       symbology: str, source: str, call_id: int | None) -> CodeView:
        async with self.db.session() as s:
            row = ScannedCode(case_id=case_id, call_id=call_id, source=source,
                              symbology=symbology, text=text, purpose=purpose_of(text),
                              created_by=principal.key)
            s.add(row)
            await s.flush()
            await audit.append(s, actor=principal.key, action="code.scanned", case_id=case_id,
                               detail={"code_id": row.id, "source": source,
                                       "symbology": symbology, "purpose": row.purpose})
            view = code_view(row)
        logger.info("case %s: %s code scanned by %s (%s)", case_id, symbology, source,
                    view.purpose)
        return view

    async def codes(self, case_id: int) -> list[CodeView]:
        async with self.db.session() as s:
            rows = (await s.scalars(select(ScannedCode).where(ScannedCode.case_id == case_id)
                                    .order_by(ScannedCode.id))).all()
            return [code_view(r) for r in rows]
