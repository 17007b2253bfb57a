"""Material pre-check (材料预审): what a case's materials satisfy and what is missing."""

from __future__ import annotations

import pytest

from vwindow.catalog import CatalogItem, SituationAnswerError, default_items
from vwindow.checklist import IdReadFact, MaterialFact, build

SB001 = next(i for i in default_items() if i.code == "SB-001")
"""居民身份证 + 免冠照片; a proxy adds 授权委托书 and 受托人居民身份证; a home visit adds a form."""

ITEM = CatalogItem.model_validate({
    "code": "T-1", "name": "测试事项", "department": "县民政局", "category": "civil_affairs",
    "questions": [{"key": "married", "text": "婚否？", "options": ["是", "否"]}],
    "required_materials": [
        {"key": "id_card", "name": "居民身份证"},
        {"key": "hukou", "name": "户口簿"},
        {"key": "spouse_id", "name": "配偶居民身份证", "required_when": {"married": "是"}},
        {"key": "photo", "name": "现场照片"},
        {"key": "licence", "name": "营业执照正副本"},
    ],
})


def page(mid: int, document: str, kind: str = "page", tag: str | None = None) -> MaterialFact:
    return MaterialFact(id=mid, kind=kind, source="doccam", filename=f"{document}-p1.jpg",
                        document=document, material_type=tag)


def file(mid: int, filename: str, kind: str = "file", tag: str | None = None) -> MaterialFact:
    return MaterialFact(id=mid, kind=kind, source="upload", filename=filename,
                        material_type=tag)


VALID_READ = IdReadFact(id=7, card_type="resident", number_valid=True)
BAD_READ = IdReadFact(id=8, card_type="resident", number_valid=False)


@pytest.mark.parametrize(("answers", "materials", "reads", "satisfied", "missing"), [
    # Nothing yet: every unconditional material is missing.
    ({}, [], [], {}, ["id_card", "hukou", "photo", "licence"]),
    # A valid ID read is the applicant's ID card; an invalid number is not.
    ({}, [], [VALID_READ], {"id_card": ("id_read", 7)}, ["hukou", "photo", "licence"]),
    ({}, [], [BAD_READ], {}, ["id_card", "hukou", "photo", "licence"]),
    # A document named like the material, in everyday words (户口本 is the 户口簿); the PDF
    # stands for the document.
    ({}, [page(1, "户口本"), page(2, "户口本", "document")], [],
     {"hukou": ("document", 2)}, ["id_card", "photo", "licence"]),
    # A shorter name inside the catalog's ("营业执照" for 营业执照正副本).
    ({}, [page(3, "营业执照")], [], {"licence": ("document", 3)},
     ["id_card", "hukou", "photo"]),
    # An uploaded file by its name without the extension.
    ({}, [file(4, "居民身份证.jpg")], [], {"id_card": ("document", 4)},
     ["hukou", "photo", "licence"]),
    # "居民身份证" is the applicant's card, not the spouse's, even once the spouse's applies.
    ({"married": "是"}, [page(5, "居民身份证")], [], {"id_card": ("document", 5)},
     ["hukou", "spouse_id", "photo", "licence"]),
    # ... and the spouse's card by its own name.
    ({"married": "是"}, [page(5, "居民身份证"), page(6, "配偶居民身份证")], [],
     {"id_card": ("document", 5), "spouse_id": ("document", 6)},
     ["hukou", "photo", "licence"]),
    # A snapshot of the live video is a photo taken on the spot.
    ({}, [file(9, "snapshot-kiosk-camera.jpg", "snapshot")], [], {"photo": ("snapshot", 9)},
     ["id_card", "hukou", "licence"]),
    # The agent's tag wins over any guess, whatever the name or kind.
    ({}, [page(10, "材料1", tag="hukou")], [], {"hukou": ("tag", 10)},
     ["id_card", "photo", "licence"]),
    ({}, [page(11, "户口本", tag="licence")], [], {"licence": ("tag", 11)},
     ["id_card", "hukou", "photo"]),
    # A name that matches nothing, originals and recordings satisfy nothing.
    ({}, [page(12, "材料1"), file(13, "户口簿.jpg", "original"),
          file(14, "户口簿.webm", "recording")], [], {}, ["id_card", "hukou", "photo", "licence"]),
    # One material counts once: a single "身份证" page does not also cover the spouse's.
    ({"married": "是"}, [page(15, "身份证")], [], {"id_card": ("document", 15)},
     ["hukou", "spouse_id", "photo", "licence"]),
])
def test_checklist_table(answers: dict[str, str], materials: list[MaterialFact],
                         reads: list[IdReadFact], satisfied: dict[str, tuple[str, int]],
                         missing: list[str]) -> None:
    checklist = build(ITEM, answers, materials, reads)
    got = {e.key: (e.satisfied_by[0].how, e.satisfied_by[0].id)
           for e in checklist.entries if e.satisfied}
    assert got == satisfied
    assert checklist.missing == missing


def test_conditional_materials_and_unanswered_questions() -> None:
    empty = build(SB001, {}, [])
    by_key = {e.key: e for e in empty.entries}
    assert [e.key for e in empty.entries if e.required] == ["id_card", "photo"]
    assert by_key["proxy_letter"].required_when == {"applicant": "委托他人"}
    assert not by_key["proxy_letter"].required
    assert empty.unanswered == ["applicant", "mobility"]
    assert not empty.complete
    proxy = build(SB001, {"applicant": "委托他人", "mobility": "能到场或视频"},
                  [page(1, "居民身份证"), page(2, "授权委托书"), page(3, "受托人居民身份证"),
                   file(4, "snap.jpg", "snapshot")])
    assert proxy.missing == [] and proxy.unanswered == [] and proxy.complete
    assert proxy.model_dump()["complete"] is True
    assert proxy.names(["proxy_id"]) == ["受托人居民身份证"]


def test_a_tag_on_a_conditional_material_counts_when_it_applies() -> None:
    checklist = build(ITEM, {"married": "是"}, [page(1, "x", tag="spouse_id")])
    assert "spouse_id" not in checklist.missing


def test_bad_answers_are_named() -> None:
    with pytest.raises(SituationAnswerError) as err:
        build(ITEM, {"married": "也许"}, [])
    assert err.value.field == "married"
    with pytest.raises(SituationAnswerError):
        build(ITEM, {"age": "60"}, [])
