"""Material pre-check (材料预审): which of an item's materials a case has, and what is missing.

Pure rules over plain facts (no database), so they are table-tested:

- the item's material rules and the case's situation answers decide what is *required*
  (``vwindow.catalog.applicable_materials``); rules whose condition is not (yet) met are
  listed as *conditional*, with the condition, and questions that would decide one are
  *unanswered*;
- an entry is satisfied by, in this order: a material the agent tagged with the entry's
  key; an ID-card read with a valid number (the applicant's 居民身份证); a document or
  file named like the material (a doccam document "户口本" is the 户口簿); an evidence
  snapshot of a live video (a photo taken on the spot, 现场照片 / 免冠照片). A material
  counts for one entry only, and a tag always wins over a guess.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Literal

from pydantic import BaseModel, computed_field

from vwindow.catalog import CatalogItem, MaterialRule, applicable_materials
from vwindow.catalog_search import normalize

How = Literal["tag", "id_read", "document", "snapshot"]

# Kinds that are the citizen's papers; originals duplicate pages, recordings are no paper.
_PAPER_KINDS = frozenset({"page", "document", "file"})
_ID_CARD_NAMES = frozenset({"居民身份证", "身份证", "本人居民身份证", "申请人居民身份证"})
# Everyday names for a paper that differ from the catalog's (户口本 for 户口簿 …).
_EVERYDAY_NAMES: Mapping[str, str] = MappingProxyType({
    "户口本": "户口簿", "身份证": "居民身份证", "结婚登记证": "结婚证", "房产证": "不动产权证书",
    "执照": "营业执照", "社保卡": "社会保障卡",
})
_PHOTO_WORDS = ("照片", "相片")


@dataclass(frozen=True)
class MaterialFact:
    """What the pre-check needs to know of one material of the case."""

    id: int
    kind: str
    source: str
    filename: str
    document: str | None = None
    material_type: str | None = None


@dataclass(frozen=True)
class IdReadFact:
    id: int
    card_type: str
    number_valid: bool


class Satisfier(BaseModel):
    kind: Literal["material", "id_read"]
    id: int
    how: How
    label: str


class ChecklistEntry(BaseModel):
    key: str
    name: str
    required: bool
    """Applies given the answers; False: conditional on answers not given (yet)."""
    required_when: dict[str, str] | None = None
    satisfied_by: list[Satisfier] = []

    @computed_field  # type: ignore[prop-decorator]
    @property
    def satisfied(self) -> bool:
        return bool(self.satisfied_by)


class Checklist(BaseModel):
    entries: list[ChecklistEntry]
    missing: list[str]
    """Keys of required entries nothing satisfies yet."""
    unanswered: list[str]
    """Keys of questions, still unanswered, that some material depends on."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def complete(self) -> bool:
        return not self.missing and not self.unanswered

    def names(self, keys: Iterable[str]) -> list[str]:
        by_key = {e.key: e.name for e in self.entries}
        return [by_key.get(k, k) for k in keys]


def is_id_card(rule: MaterialRule) -> bool:
    """The applicant's own ID card (not a proxy's, guardian's or spouse's)."""
    return rule.key == "id_card" or normalize(rule.name) in _ID_CARD_NAMES


def _paper_name(m: MaterialFact) -> str:
    raw = m.document or PurePosixPath(m.filename).stem
    name = normalize(raw)
    return _EVERYDAY_NAMES.get(name, name)


def _name_match(paper: str, rule: MaterialRule) -> int:
    """0: no match; 2: the same name; 1: one name inside the other (the closer, the better
    is decided by the caller through the length difference)."""
    wanted = normalize(rule.name)
    if len(paper) < 2 or not wanted:
        return 0
    if paper == wanted:
        return 2
    if paper in wanted or wanted in paper:
        return 1
    return 0


def build(item: CatalogItem, answers: Mapping[str, str], materials: Sequence[MaterialFact],
          id_reads: Sequence[IdReadFact] = ()) -> Checklist:
    """The checklist of a case of ``item`` with these ``answers``, materials and ID reads.

    Raises ``SituationAnswerError`` for an answer the item does not know.
    """
    applicable = {m.key for m in applicable_materials(item, answers)}
    entries = {rule.key: ChecklistEntry(key=rule.key, name=rule.name,
                                        required=rule.key in applicable,
                                        required_when=rule.required_when)
               for rule in item.required_materials}
    rules = {rule.key: rule for rule in item.required_materials}
    used: set[int] = set()

    def take(key: str, satisfier: Satisfier) -> None:
        entries[key].satisfied_by.append(satisfier)
        if satisfier.kind == "material":
            used.add(satisfier.id)

    # 1. The agent's tags: explicit, and whatever the kind.
    for m in materials:
        if m.material_type in entries:
            take(m.material_type, Satisfier(kind="material", id=m.id, how="tag",
                                            label=m.document or m.filename))
    # Required entries are served before conditional ones, each in the catalog's order.
    order = sorted(rules, key=lambda k: (not entries[k].required,
                                         list(rules).index(k)))
    # 2. A valid ID read is the applicant's ID card.
    valid_reads = [r for r in id_reads if r.number_valid]
    for key in order:
        if valid_reads and is_id_card(rules[key]) and not entries[key].satisfied:
            read = valid_reads[0]
            take(key, Satisfier(kind="id_read", id=read.id, how="id_read",
                                label=read.card_type))
    # 3. Papers named like the material: a document (its pages and PDF) counts once.
    papers: dict[str, list[MaterialFact]] = {}
    for m in materials:
        if m.id in used or m.material_type is not None or m.kind not in _PAPER_KINDS:
            continue
        papers.setdefault(_paper_name(m), []).append(m)
    for paper, group in papers.items():
        best: tuple[int, int, str] | None = None
        for key in order:
            if entries[key].satisfied:
                continue
            score = _name_match(paper, rules[key])
            if not score:
                continue
            rank = (score, -abs(len(normalize(rules[key].name)) - len(paper)), key)
            if best is None or rank[:2] > best[:2]:
                best = rank
        if best is not None:
            # The PDF stands for the document when there is one, else its first page.
            shown = next((m for m in group if m.kind == "document"), group[0])
            take(best[2], Satisfier(kind="material", id=shown.id, how="document",
                                    label=shown.document or shown.filename))
    # 4. A snapshot taken during the call is a photo taken on the spot.
    for m in materials:
        if m.kind != "snapshot" or m.id in used or m.material_type is not None:
            continue
        photo = next((k for k in order if not entries[k].satisfied
                      and any(w in rules[k].name for w in _PHOTO_WORDS)), None)
        if photo is not None:
            take(photo, Satisfier(kind="material", id=m.id, how="snapshot", label=m.filename))
    missing = [k for k in rules if entries[k].required and not entries[k].satisfied]
    deciding = {q for rule in item.required_materials for q in (rule.required_when or {})}
    unanswered = [q.key for q in item.questions if q.key in deciding and q.key not in answers]
    return Checklist(entries=[entries[k] for k in rules], missing=missing,
                     unanswered=unanswered)
