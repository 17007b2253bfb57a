"""In-call chat kept in the case: each message is a ``chat`` note of the call's case.

A picture or voice note travels as a material of the same case (uploaded first, over
REST); the note then carries the message's text and a ``[material:<id>]`` reference,
so the case's notes read back as the call's chat, attachments included.
"""

from __future__ import annotations

import logging

from vwindow.auth import Principal
from vwindow.cases import material_view
from vwindow.db import Database
from vwindow.errors import NotFoundError, ValidationError
from vwindow.models import Call, CaseNote, Material
from vwindow.views import MaterialView

logger = logging.getLogger(__name__)

CHAT_KIND = "chat"


def note_text(text: str, material_id: int | None) -> str:
    """What the note stores: the text, then a reference to the attached material."""
    reference = f"[material:{material_id}]" if material_id is not None else ""
    return " ".join(part for part in (text, reference) if part)


async def store_chat(db: Database, principal: Principal, call_id: int, text: str,
                     material_id: int | None) -> MaterialView | None:
    """Save one chat message as a note of the call's case; the attachment's view, if any.

    The material must belong to the call's case: a picture of another case is refused,
    whoever can see it.
    """
    async with db.session() as s:
        call = await s.get(Call, call_id)
        if call is None:
            raise NotFoundError(f"call {call_id} does not exist", field="call_id")
        view: MaterialView | None = None
        if material_id is not None:
            material = await s.get(Material, material_id)
            if material is None or material.case_id != call.case_id:
                raise ValidationError(f"material {material_id} is not a material of the "
                                      f"case of call {call_id}", field="material_id")
            view = material_view(material)
        note = CaseNote(case_id=call.case_id, call_id=call_id, kind=CHAT_KIND,
                        author=principal.key, author_name=principal.name,
                        text=note_text(text, material_id))
        s.add(note)
    logger.debug("case %s: chat note stored for call %s", call.case_id, call_id)
    return view
