"""The PDF energy report (reportlab): KPIs, daily consumption vs production, incidents,
daily totals, and the certificate block; every page's footer repeats the data checksum."""

from __future__ import annotations

import io
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.charts.linecharts import HorizontalLineChart
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from services.gateway.reports import ReportData, cell_text, certificate, kpis

_DOCUMENT = "SP-E energy report (PDF)"
_CONSUMPTION = colors.HexColor("#c0392b")
_PRODUCTION = colors.HexColor("#27ae60")
_GRID = TableStyle(
    [
        ("FONT", (0, 0), (-1, -1), "Helvetica", 7.5),
        ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 7.5),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#ecf0f1")),
        ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]
)


def _daily_chart(data: ReportData, width: float) -> Drawing:
    """Daily consumption and production as two lines, dates on the axis."""
    daily = data.tables[1].rows if len(data.tables) > 1 else []
    drawing = Drawing(width, 62 * mm)
    drawing.add(String(0, 58 * mm, "Daily consumption vs production (kWh)", fontSize=9))
    if not daily:
        drawing.add(String(0, 30 * mm, "no readings in this period", fontSize=8))
        return drawing
    chart = HorizontalLineChart()
    chart.x, chart.y = 12 * mm, 12 * mm
    chart.width, chart.height = width - 16 * mm, 40 * mm
    chart.data = [
        [row[1] if row[1] is not None else 0.0 for row in daily],
        [row[2] if row[2] is not None else 0.0 for row in daily],
    ]
    step = max(1, len(daily) // 10)  # about ten date labels, whatever the period
    chart.categoryAxis.categoryNames = [
        row[0][5:] if i % step == 0 else "" for i, row in enumerate(daily)
    ]
    chart.categoryAxis.labels.fontSize = 6
    chart.categoryAxis.labels.angle = 30
    chart.categoryAxis.labels.boxAnchor = "ne"
    chart.valueAxis.labels.fontSize = 6
    chart.valueAxis.valueMin = 0
    chart.lines[0].strokeColor, chart.lines[1].strokeColor = _CONSUMPTION, _PRODUCTION
    chart.lines[0].strokeWidth = chart.lines[1].strokeWidth = 1.2
    drawing.add(chart)
    legend = Legend()
    legend.x, legend.y = width - 50 * mm, 58 * mm
    legend.fontSize, legend.columnMaximum = 7, 1
    legend.colorNamePairs = [(_CONSUMPTION, "consumption"), (_PRODUCTION, "production")]
    drawing.add(legend)
    return drawing


def _cell(value: Any) -> Any:
    return value if isinstance(value, Paragraph) else cell_text(value)


def _para(text: str, style: ParagraphStyle) -> Paragraph:
    return Paragraph(escape(text), style)  # site names and titles are data, not markup


def _table(columns: list[str], rows: list[list[Any]], widths: list[float] | None = None) -> Table:
    body = [columns, *([_cell(v) for v in row] for row in rows)]
    table = Table(body, colWidths=widths, repeatRows=1)
    table.setStyle(_GRID)
    return table


def build_pdf(data: ReportData, checksum: str) -> bytes:
    """The report as PDF bytes."""
    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=18 * mm,
        title=f"SP-E energy report {data.site['code']}",
        author="SP-E",
        subject=f"data SHA-256 {checksum}",
    )
    styles = getSampleStyleSheet()
    small = ParagraphStyle("small", parent=styles["Normal"], fontSize=8, leading=10)
    site = data.site
    period = f"{data.balance.get('start', data.start.isoformat())} to " + str(
        data.balance.get("end", data.end.isoformat())
    )
    story: list[Any] = [
        _para(f"SP-E energy report: {site['code']} ({site.get('name', '')})", styles["Title"]),
        _para(f"Period {period} (end exclusive), source {data.source_label}", small),
        Spacer(1, 4 * mm),
        Paragraph("Key figures", styles["Heading2"]),
        _table(["figure", "value"], [list(k) for k in kpis(data)], [70 * mm, 80 * mm]),
        Spacer(1, 4 * mm),
        _daily_chart(data, doc.width),
        Paragraph("Incidents", styles["Heading2"]),
    ]
    incidents = data.tables[2]
    if incidents.rows:
        shown = ["id", "severity", "status", "title", "first_seen_at", "peak_value", "unit"]
        idx = [incidents.columns.index(c) for c in shown]
        rows = [[row[i] for i in idx] for row in incidents.rows]
        for row in rows:  # long titles wrap instead of overflowing the page
            row[3] = _para(cell_text(row[3]), small)
        widths = [10 * mm, 16 * mm, 21 * mm, 62 * mm, 40 * mm, 18 * mm, 11 * mm]
        table = Table([shown, *rows], colWidths=widths, repeatRows=1)
        table.setStyle(_GRID)
        story.append(table)
    else:
        story.append(Paragraph("No incident in this period.", small))
    daily = data.tables[1]
    story += [
        Paragraph("Daily totals", styles["Heading2"]),
        _table(daily.columns, daily.rows),
        KeepTogether(
            [
                Paragraph("Certificate", styles["Heading2"]),
                _table(
                    ["field", "value"],
                    [[k, _para(v, small)] for k, v in certificate(data, checksum, _DOCUMENT)],
                    [40 * mm, 140 * mm],
                ),
                Spacer(1, 2 * mm),
                Paragraph(
                    "The hourly rows behind these figures are in the Excel report of the same "
                    "site, period and source, which carries the same data checksum.",
                    small,
                ),
            ]
        ),
    ]

    def footer(canvas: Canvas, _doc: Any) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 6.5)
        canvas.drawString(
            15 * mm,
            10 * mm,
            f"SP-E {site['code']} {period} | generated "
            f"{data.generated_at.isoformat(timespec='seconds')}",
        )
        canvas.drawString(15 * mm, 6.5 * mm, f"data SHA-256 {checksum}")
        canvas.drawRightString(A4[0] - 15 * mm, 6.5 * mm, f"page {canvas.getPageNumber()}")
        canvas.restoreState()

    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buf.getvalue()
