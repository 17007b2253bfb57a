"""The PDF report of a remote site inspection (踏勘报告).

One A4 document: the case and the inspection (numbers, service item, township, site,
times, participants), the checklist with each item's result and note, the conclusion,
then every evidence snapshot as it was stamped, with its position and time. Text is real
PDF text in an embedded CJK TrueType font (fpdf2), so the report can be searched and
parsed; the snapshots are embedded as the JPEGs that were stored.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from fpdf import FPDF

from vwindow.errors import VWindowError
from vwindow.fonts import cjk_font
from vwindow.inspections import ReportFacts

logger = logging.getLogger(__name__)

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
STATES = {"pending": "未检查 pending", "pass": "符合 pass", "fail": "不符合 fail",
          "na": "不适用 n/a"}

Progress = Callable[[int, int], None]


class ReportError(VWindowError):
    code = "report_failed"
    http_status = 500


def _local(t: datetime | None) -> str:
    return t.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M:%S") if t else "—"


def build_report(facts: ReportFacts, conclusion: str, images: Mapping[str, bytes], *,
                 generated_at: datetime, progress: Progress | None = None) -> bytes:
    """The report as PDF bytes; ``images`` maps an evidence file's SHA-256 to its JPEG."""
    font = cjk_font(truetype_only=True)
    if font is None:
        raise ReportError("no CJK TrueType font to write the report with (Debian: "
                          "apt-get install fonts-droid-fallback)")
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_font("cjk", fname=str(font))
    insp = facts.inspection
    pdf.set_title(f"踏勘报告 {insp.number}")
    pdf.set_creator("vwindow")
    pdf.add_page()
    pdf.set_font("cjk", size=18)
    pdf.cell(0, 12, "远程踏勘报告 Remote site inspection report", new_x="LMARGIN",
             new_y="NEXT", align="C")
    pdf.set_font("cjk", size=10.5)
    rows = [
        ("踏勘编号 Inspection", insp.number),
        ("案件编号 Case", facts.case_number),
        ("办理事项 Service", facts.service),
        ("乡镇 Township", facts.township),
        ("现场地址 Site", insp.site_address or "—"),
        ("登记坐标 Registered position",
         f"{insp.site_lat:.6f}, {insp.site_lon:.6f}" if insp.site_lat is not None
         and insp.site_lon is not None else "—"),
        ("承办人 Officer", facts.agent_name),
        ("参与人 Participants", "、".join(facts.participants) or "—"),
        ("开始 Started", _local(insp.created_at)),
        ("报告生成 Generated", _local(generated_at)),
    ]
    for label, value in rows:
        pdf.set_font("cjk", size=9)
        pdf.cell(52, 7, label, border="B")
        pdf.set_font("cjk", size=10.5)
        pdf.multi_cell(0, 7, value, border="B", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("cjk", size=13)
    pdf.cell(0, 9, "检查项目 Checklist", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=10)
    evidence_no = {e.material_id: n for n, (e, _) in enumerate(facts.evidence_files, 1)}
    for n, item in enumerate(insp.checklist, 1):
        refs = ", ".join(f"#{evidence_no[m]}" for m in item.get("evidence", [])
                         if m in evidence_no)
        line = f"{n}. {item['text']}  —  {STATES.get(item['state'], item['state'])}"
        if item.get("note"):
            line += f"；{item['note']}"
        if refs:
            line += f"（证据 evidence {refs}）"
        pdf.multi_cell(0, 6.5, line, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("cjk", size=13)
    pdf.cell(0, 9, "结论 Conclusion", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=10.5)
    pdf.multi_cell(0, 7, conclusion or "—", new_x="LMARGIN", new_y="NEXT")
    total = len(facts.evidence_files)
    for n, (ev, sha) in enumerate(facts.evidence_files, 1):
        jpeg = images.get(sha)
        if jpeg is None:
            raise ReportError(f"evidence #{n} (material {ev.material_id}) is missing from "
                              "the file store")
        pdf.add_page()
        pdf.set_font("cjk", size=12)
        where = (f"{ev.lat:.6f}, {ev.lon:.6f} ±{ev.accuracy or 0:.0f} m"
                 if ev.lat is not None and ev.lon is not None else "无定位 no fix")
        kind = "（标注 annotated）" if ev.annotated_from else ""
        pdf.multi_cell(0, 7, f"证据 Evidence #{n}{kind}  {_local(ev.taken_at)}  {where}",
                       new_x="LMARGIN", new_y="NEXT")
        pdf.image(io.BytesIO(jpeg), w=pdf.epw)
        if progress is not None:
            progress(n, total)
    out = pdf.output()
    logger.info("inspection %s: report of %d pages, %d evidence", insp.number, pdf.pages_count,
                total)
    return bytes(out)
