"""Who sees which personal data of citizens unmasked: the role → field table for lists
and exports (the ``[privacy]`` config section), and :class:`Disclosure`, which applies it.

The personal data the server holds are ID-card reads: name, address, birth date and ID
number (no phone numbers are stored). Two kinds of view show them:

* ``list``: a case's ID reads as the case view (``GET /api/v1/cases/{id}``) returns them;
* ``export``: files that leave the system (the cases export, CSV or XLSX).

The default table, and why (principle of least privilege, as a 政务 back office expects:
a field is shown in full only where a job needs it, and then traceably):

=========== ============================ ==========================================
role        lists                        exports
=========== ============================ ==========================================
kiosk       all masked                   (no exports)
agent       all masked                   (no exports)
supervisor  all masked                   full name; ID number masked
surveyor    all masked                   (no exports)
other       all masked                   all masked
=========== ============================ ==========================================

Masked, a name is ``欧**华``, an address its first six characters and ``…``, a birth date
its year (``1958-**-**``), an ID number ``3401**********1234``. Exports carry no
addresses and no birth dates, so unmasking those for exports changes nothing.

* The full ID number is never in a list or an export, whatever the config says: the
  agent on the case gets it (with the full name and address) only through
  ``POST /id-reads/{id}/reveal``, which writes who, why and when to the case's audit
  chain. The config refuses ``id_number``.
* Agents see the reads masked like everyone: the reveal is one click when the work
  needs the full data, and leaves the trace a list view would not.
* The birth date is masked to its year by default because the full date is what the
  masked ID number hides (its digits 7-14); the year is enough to see an elderly
  applicant. The elderly-priority rule of the queue does not read these views: it uses
  the date the kiosk sends with ``call.start`` or the stored ID read itself
  (``vwindow.queue.CallQueue.elderly_read``). The reveal returns the full date with the
  number it comes from.
* Supervisors' cases export is a case-handling list (follow-up calls, 督办, answering
  complaints about a case), which needs the applicant's name; each export that carries
  unmasked data writes the fields into its ``report.exported`` audit entry
  (``detail.unmasked``), so who took names out of the system, and when, is on record.
* The kiosk screen faces the public and the surveyor link is a phone's one-time link:
  neither is a person with a duty to see personal data.
* A role the table does not name (or none) sees everything masked.

Pushed events (``case.idread`` to everyone in a call, the kiosk included) are always
masked: one payload goes to several roles, so it is cut for the least entitled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vwindow.models import Role
from vwindow.privacy import mask_address, mask_birth_date, mask_id_number, mask_name

PersonalField = Literal["name", "address", "birth_date", "id_number"]
"""The personal fields of an ID-card read that lists and exports show."""
Unmaskable = Literal["name", "address", "birth_date"]
"""The fields the table may unmask: never ``id_number``."""
View = Literal["list", "export"]


def _default_exports() -> dict[Role, tuple[Unmaskable, ...]]:
    return {Role.SUPERVISOR: ("name",)}


class PrivacyConfig(BaseModel):
    """The ``[privacy]`` config section: per role, which personal data of citizens
    (ID-card reads) lists and exports show unmasked. Roles: ``kiosk``, ``agent``,
    ``supervisor``, ``surveyor``; one not named sees everything masked, and a table
    given replaces the default whole. Full ID numbers are never in a
    list or an export (only the audited reveal shows them), so ``id_number`` is refused.
    Fields: ``name``, ``address``, ``birth_date`` (masked: the year only).
    Example: ``unmasked_in_lists = { agent = ["name", "birth_date"] }``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unmasked_in_lists: dict[Role, tuple[Unmaskable, ...]] = Field(default_factory=dict)
    """Fields shown in full, per role, where a case's ID reads are listed (the case view)."""
    unmasked_in_exports: dict[Role, tuple[Unmaskable, ...]] = Field(
        default_factory=_default_exports)
    """Fields written in full, per role, into exports (the cases export); each such
    export's audit entry names them. Exports carry no addresses and no birth dates, so
    those two change nothing here."""

    @field_validator("unmasked_in_lists", "unmasked_in_exports", mode="before")
    @classmethod
    def _never_id_numbers(cls, value: object) -> object:
        if isinstance(value, dict) and any(
                isinstance(fields, list | tuple) and "id_number" in fields
                for fields in value.values()):
            raise ValueError("'id_number' is never unmasked in lists or exports; the full "
                             "number is shown only through the audited reveal")
        return value


@dataclass(frozen=True)
class Disclosure:
    """What one reader sees of personal data in one kind of view."""

    unmasked: frozenset[Unmaskable] = frozenset()

    def shows(self, field: PersonalField) -> bool:
        """Whether ``field`` is shown in full."""
        return field in self.unmasked

    def name(self, value: str) -> str:
        return value if "name" in self.unmasked else mask_name(value)

    def address(self, value: str) -> str:
        return value if "address" in self.unmasked else mask_address(value)

    def birth_date(self, value: str) -> str:
        return value if "birth_date" in self.unmasked else mask_birth_date(value)

    def id_number(self, value: str) -> str:
        return mask_id_number(value)


MASKED: Final = Disclosure()
"""Everything masked: pushed events, unknown readers."""


def disclosure(config: PrivacyConfig, role: Role | str | None, view: View) -> Disclosure:
    """What ``role`` sees in ``view``; everything masked for a role the table lacks."""
    try:
        known = Role(role) if role is not None else None
    except ValueError:
        return MASKED
    table = config.unmasked_in_lists if view == "list" else config.unmasked_in_exports
    fields = table.get(known) if known is not None else None
    return Disclosure(frozenset(fields)) if fields else MASKED
