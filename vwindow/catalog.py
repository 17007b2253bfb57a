"""The service catalog (事项目录): items, situation questions, catalog files.

A ``CatalogItem`` is one standard government service item: its code, name, department,
category (the routing skill), the materials it needs, the situation questions (情形问答)
whose answers decide which of those materials apply, and whether rules alone may approve
it on the spot (秒批). ``applicable_materials`` turns answers into the checklist.

Catalogs travel as JSON (a list of items, the shape of ``catalog_data/items.json``) or as
CSV for spreadsheet users: one row per item, the nested columns JSON-encoded. A file that
does not parse raises ``CatalogFormatError`` naming the item or row and the column.

The synonym table for colloquial search (``catalog_data/synonyms.json``) is read here
too; the search itself is ``vwindow.catalog_search``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import pydantic
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from vwindow.errors import ValidationError

CSV_COLUMNS = ("code", "name", "department", "category", "instant_approval",
               "required_materials", "questions", "aliases", "keywords")
_JSON_COLUMNS = frozenset({"required_materials", "questions", "aliases", "keywords"})
_DATA_PACKAGE = "vwindow"
_DATA_DIR = "catalog_data"


class CatalogFormatError(ValidationError):
    """A catalog or synonym file, item or row that does not parse."""

    code = "invalid_catalog"


class SituationAnswerError(ValidationError):
    """An answer names a question the item does not ask, or an option it does not offer."""

    code = "invalid_situation_answer"


def _text(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return value


class MaterialRule(BaseModel):
    """One material; with ``required_when`` it applies only when every listed answer is given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    required_when: dict[str, str] | None = None

    @field_validator("key", "name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        return _text(value)

    def applies(self, answers: Mapping[str, str]) -> bool:
        if not self.required_when:
            return True
        return all(answers.get(k) == v for k, v in self.required_when.items())


class SituationQuestion(BaseModel):
    """A situation question (情形问答) with its fixed options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=200)
    options: tuple[str, ...] = Field(min_length=2)

    @field_validator("key", "text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        return _text(value)

    @field_validator("options")
    @classmethod
    def _distinct_options(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        options = tuple(_text(o) for o in value)
        if len(set(options)) != len(options):
            raise ValueError(f"options repeat: {list(options)}")
        return options


class CatalogItem(BaseModel):
    """One standard service item of the catalog."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    name: str = Field(min_length=1, max_length=200)
    department: str = Field(min_length=1, max_length=100)
    category: str = Field(min_length=1, max_length=64)
    # Questions come before materials so that the materials' check can see them.
    questions: tuple[SituationQuestion, ...] = ()
    required_materials: tuple[MaterialRule, ...] = ()
    instant_approval: bool = False
    """Rules alone may approve the item at once (秒批) once its materials are in."""
    aliases: tuple[str, ...] = ()
    """Colloquial names people use for the item."""
    keywords: tuple[str, ...] = ()

    @field_validator("name", "department", "category")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        return _text(value)

    @field_validator("aliases", "keywords")
    @classmethod
    def _terms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_text(v) for v in value)

    @field_validator("questions")
    @classmethod
    def _distinct_questions(
            cls, value: tuple[SituationQuestion, ...]) -> tuple[SituationQuestion, ...]:
        _unique(q.key for q in value)
        return value

    @field_validator("required_materials")
    @classmethod
    def _conditions_exist(cls, value: tuple[MaterialRule, ...],
                          info: ValidationInfo) -> tuple[MaterialRule, ...]:
        _unique(m.key for m in value)
        if "questions" not in info.data:
            return value  # the questions are wrong themselves, and reported as such
        questions = {q.key: q for q in info.data["questions"]}
        for material in value:
            for key, answer in (material.required_when or {}).items():
                question = questions.get(key)
                if question is None:
                    raise ValueError(f"material {material.key!r}: required_when names "
                                     f"question {key!r}, which the item does not ask")
                if answer not in question.options:
                    raise ValueError(f"material {material.key!r}: required_when answer "
                                     f"{answer!r} is not an option of question {key!r}")
        return value


def _unique(keys: Iterable[str]) -> None:
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise ValueError(f"key {key!r} appears twice")
        seen.add(key)


def applicable_materials(item: CatalogItem, answers: Mapping[str, str]) -> list[MaterialRule]:
    """The materials ``item`` needs given the situation ``answers`` (question key → option).

    A material conditional on a question left unanswered is not listed: the checklist
    grows as the agent or citizen answers. An answer to a question the item does not ask,
    or outside the question's options, raises ``SituationAnswerError`` naming it.
    """
    questions = {q.key: q for q in item.questions}
    for key, answer in answers.items():
        question = questions.get(key)
        if question is None:
            raise SituationAnswerError(f"item {item.code} asks no question {key!r}", field=key)
        if answer not in question.options:
            raise SituationAnswerError(
                f"item {item.code}: {answer!r} is not an option of question {key!r} "
                f"(options: {', '.join(question.options)})", field=key)
    return [m for m in item.required_materials if m.applies(answers)]


# -- JSON ------------------------------------------------------------------------------


def _pydantic_problem(err: pydantic.ValidationError) -> tuple[str, str]:
    """(dotted location, message) of the first problem pydantic found."""
    first = err.errors()[0]
    loc = ".".join(str(part) for part in first["loc"]) or "item"
    return loc, str(first["msg"])


def _check_codes(items: Sequence[CatalogItem], where: Sequence[str]) -> None:
    seen: dict[str, str] = {}
    for item, place in zip(items, where, strict=True):
        if item.code in seen:
            raise CatalogFormatError(
                f"{place}, column 'code': {item.code!r} repeats {seen[item.code]}", field="code")
        seen[item.code] = place


def parse_items(data: Any, source: str = "catalog") -> list[CatalogItem]:
    """Items from decoded JSON (a list of objects); ``source`` names it in errors."""
    if not isinstance(data, list):
        raise CatalogFormatError(f"{source}: expected a JSON list of items, "
                                 f"got {type(data).__name__}")
    items: list[CatalogItem] = []
    places: list[str] = []
    for index, raw in enumerate(data):
        code = raw.get("code") if isinstance(raw, dict) else None
        place = f"{source}: item {index}" + (f" ({code})" if isinstance(code, str) else "")
        try:
            items.append(CatalogItem.model_validate(raw))
        except pydantic.ValidationError as err:
            loc, msg = _pydantic_problem(err)
            raise CatalogFormatError(f"{place}, field {loc!r}: {msg}", field=loc) from err
        places.append(place)
    _check_codes(items, places)
    return items


def load_items(path: str | Path) -> list[CatalogItem]:
    """Read a JSON catalog file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise CatalogFormatError(f"{path}: cannot read: {err}") from err
    except json.JSONDecodeError as err:
        raise CatalogFormatError(f"{path}: not JSON: line {err.lineno} column {err.colno}: "
                                 f"{err.msg}") from err
    return parse_items(data, str(path))


def items_json(items: Iterable[CatalogItem]) -> str:
    """The JSON text ``dump_json`` writes, laid out for hand editing and clean diffs.

    One block per item, one line per field, one line per question and per material.
    """
    blocks: list[str] = []
    for item in items:
        fields: list[str] = []
        for key, value in item.model_dump(mode="json", exclude_none=True).items():
            if key in ("questions", "required_materials") and value:
                rows = ",\n".join(f"      {_compact(entry)}" for entry in value)
                fields.append(f"    {_compact(key)}: [\n{rows}\n    ]")
            else:
                fields.append(f"    {_compact(key)}: {_compact(value)}")
        blocks.append("  {\n" + ",\n".join(fields) + "\n  }")
    return ("[\n" + ",\n".join(blocks) + "\n]\n") if blocks else "[]\n"


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def dump_json(items: Iterable[CatalogItem], path: str | Path) -> None:
    Path(path).write_text(items_json(items), encoding="utf-8")


def default_items() -> list[CatalogItem]:
    """The county catalog shipped with vwindow (``vwindow/catalog_data/items.json``)."""
    text = (resources.files(_DATA_PACKAGE) / _DATA_DIR / "items.json").read_text("utf-8")
    return parse_items(json.loads(text), "catalog_data/items.json")


# -- CSV -------------------------------------------------------------------------------


def dump_csv(items: Iterable[CatalogItem], path: str | Path) -> None:
    """One row per item; nested columns as compact JSON.

    Written with a byte-order mark because spreadsheet programs on Chinese Windows read
    BOM-less CSV as GBK and garble every name.
    """
    with Path(path).open("w", encoding="utf-8-sig", newline="") as f:
        _write_csv(f, items)


def items_csv(items: Iterable[CatalogItem]) -> str:
    """The CSV text ``dump_csv`` writes, without the byte-order mark (add it when encoding)."""
    out = io.StringIO(newline="")
    _write_csv(out, items)
    return out.getvalue()


def _write_csv(f: TextIO, items: Iterable[CatalogItem]) -> None:
    writer = csv.writer(f)
    writer.writerow(CSV_COLUMNS)
    for item in items:
        data = item.model_dump(mode="json", exclude_none=True)
        writer.writerow([_csv_cell(column, data[column]) for column in CSV_COLUMNS])


def _csv_cell(column: str, value: Any) -> str:
    if column in _JSON_COLUMNS:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def load_csv(path: str | Path) -> list[CatalogItem]:
    """Read a CSV catalog written by ``dump_csv`` (or edited in a spreadsheet)."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as err:
        raise CatalogFormatError(f"{path}: cannot read: {err}") from err
    except csv.Error as err:
        raise CatalogFormatError(f"{path}: not CSV: {err}") from err
    return _csv_rows(rows, str(path))


def parse_csv(text: str, source: str = "catalog.csv") -> list[CatalogItem]:
    """Items from CSV text (an upload); ``source`` names it in errors."""
    try:
        rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline="")))
    except csv.Error as err:
        raise CatalogFormatError(f"{source}: not CSV: {err}") from err
    return _csv_rows(rows, source)


def _csv_rows(rows: list[list[str]], path: str) -> list[CatalogItem]:
    if not rows:
        raise CatalogFormatError(f"{path}: empty, expected a header row")
    header = [cell.strip() for cell in rows[0]]
    for column in header:
        if column not in CSV_COLUMNS:
            raise CatalogFormatError(f"{path}: row 1: unknown column {column!r}", field=column)
    for column in CSV_COLUMNS:
        if column not in header and column in ("code", "name", "department", "category"):
            raise CatalogFormatError(f"{path}: row 1: missing column {column!r}", field=column)
    if len(set(header)) != len(header):
        raise CatalogFormatError(f"{path}: row 1: a column appears twice")
    items: list[CatalogItem] = []
    places: list[str] = []
    # Spreadsheet numbering: the header is row 1, so the first item is row 2.
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        place = f"{path}: row {number}"
        if len(row) != len(header):
            raise CatalogFormatError(f"{place}: {len(row)} cells, the header has {len(header)}")
        items.append(_csv_item(dict(zip(header, row, strict=True)), place))
        places.append(place)
    _check_codes(items, places)
    return items


def _csv_item(cells: dict[str, str], place: str) -> CatalogItem:
    data: dict[str, Any] = {}
    for column, cell in cells.items():
        if column in _JSON_COLUMNS:
            if not cell.strip():
                data[column] = []
                continue
            try:
                data[column] = json.loads(cell)
            except json.JSONDecodeError as err:
                raise CatalogFormatError(f"{place}, column {column!r}: not JSON: {err.msg} "
                                         f"at character {err.pos}", field=column) from err
        elif column == "instant_approval":
            flag = cell.strip().lower()
            if flag not in ("true", "false"):
                raise CatalogFormatError(f"{place}, column {column!r}: {cell!r} is neither "
                                         "true nor false", field=column)
            data[column] = flag == "true"
        else:
            data[column] = cell
    try:
        return CatalogItem.model_validate(data)
    except pydantic.ValidationError as err:
        loc, msg = _pydantic_problem(err)
        column = loc.split(".", 1)[0]
        raise CatalogFormatError(f"{place}, column {column!r} ({loc}): {msg}",
                                 field=column) from err


# -- synonyms --------------------------------------------------------------------------


def parse_synonyms(data: Any, source: str = "synonyms") -> dict[str, tuple[str, ...]]:
    """Colloquial phrase → standard terms, from groups ``{"colloquial": [...], "standard": [...]}``.

    A phrase in several groups maps to the union of their standard terms.
    """
    if not isinstance(data, list):
        raise CatalogFormatError(f"{source}: expected a JSON list of groups")
    table: dict[str, list[str]] = {}
    for index, group in enumerate(data):
        place = f"{source}: group {index}"
        if not isinstance(group, dict) or set(group) != {"colloquial", "standard"}:
            raise CatalogFormatError(f"{place}: expected an object with exactly the keys "
                                     "'colloquial' and 'standard'")
        lists: dict[str, list[str]] = {}
        for key in ("colloquial", "standard"):
            terms = group[key]
            if (not isinstance(terms, list) or not terms
                    or not all(isinstance(t, str) and t.strip() for t in terms)):
                raise CatalogFormatError(f"{place}, field {key!r}: expected a non-empty list "
                                         "of non-blank strings", field=key)
            lists[key] = [t.strip() for t in terms]
        for phrase in lists["colloquial"]:
            merged = table.setdefault(phrase, [])
            merged.extend(t for t in lists["standard"] if t not in merged)
    return {phrase: tuple(terms) for phrase, terms in table.items()}


def load_synonyms(path: str | Path) -> dict[str, tuple[str, ...]]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CatalogFormatError(f"{path}: cannot read as JSON: {err}") from err
    return parse_synonyms(data, str(path))


def default_synonyms() -> dict[str, tuple[str, ...]]:
    """The synonym table shipped with vwindow (``vwindow/catalog_data/synonyms.json``)."""
    text = (resources.files(_DATA_PACKAGE) / _DATA_DIR / "synonyms.json").read_text("utf-8")
    return parse_synonyms(json.loads(text), "catalog_data/synonyms.json")

