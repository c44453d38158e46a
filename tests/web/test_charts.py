"""The server-drawn SVG bar charts: exact geometry, escaped text, a title on every bar."""

import re
from decimal import Decimal

import pytest
from lxml import etree

from luxfact.web import charts
from luxfact.web.billing_dashboard import Month, last_months, percent

SVG = "{http://www.w3.org/2000/svg}"
ONE = [charts.Series("Billed", "#0b5cad")]
TWO = [charts.Series("Billed", "#0b5cad"), charts.Series("Paid", "#1b6e3a")]


PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def parse(markup: str) -> etree._Element:
    return etree.fromstring(str(markup).encode(), PARSER)  # well-formed XML, or this raises


def bars(svg: etree._Element) -> list[etree._Element]:
    return [rect for rect in svg.iter(f"{SVG}rect") if rect.find(f"{SVG}title") is not None]


def test_column_heights_are_exact_shares_of_the_largest_value() -> None:
    groups = [charts.Group("Jan", (10_000, 2_500), ("100.00", "25.00")),
              charts.Group("Feb", (30_000, 0), ("300.00", "0.00")),
              charts.Group("Mar", (1, 3), ("0.01", "0.03"))]
    found = charts.column_bars(groups, 2)
    by = {(bar.group, bar.series): bar for bar in found}
    assert by[(1, 0)].height == Decimal(charts.PLOT_HEIGHT)  # the largest fills the plot
    assert by[(0, 0)].height == Decimal("66.67")  # 10,000 / 30,000 of 200 px, rounded half up
    assert by[(0, 1)].height == Decimal("16.67")
    assert by[(1, 1)].height == 0
    assert by[(2, 1)].height == Decimal("0.02")  # 3 / 30,000 of 200 = 0.02
    base = charts.TOP + charts.PLOT_HEIGHT
    assert all(bar.y + bar.height == base for bar in found)  # every bar stands on the axis
    assert by[(0, 1)].x == by[(0, 0)].x + by[(0, 0)].width  # side by side
    assert all(isinstance(v, Decimal) for bar in found for v in (bar.x, bar.y, bar.width))


def test_row_lengths_are_exact_and_decimal_rates_work() -> None:
    groups = [charts.Group("CUMUL_INTERDIT", (Decimal("12.5"),), ("12.5 %",)),
              charts.Group("DOUBLON", (Decimal("2.5"),), ("2.5 %",))]
    first, second = charts.row_bars(groups, 1)
    plot = charts.WIDTH - 2 * charts.SIDE - charts.LABEL_WIDTH - charts.VALUE_ROOM
    assert first.width == plot and second.width == Decimal(plot) / 5
    assert second.y == first.y + charts.ROW


def test_the_markup_is_svg_with_a_title_on_every_bar() -> None:
    groups = [charts.Group("janv. 26", (123_456, 7_890), ("1 234,56 EUR", "78,90 EUR")),
              charts.Group("févr. 26", (0, 100), ("0,00 EUR", "1,00 EUR"))]
    svg = parse(charts.bar_chart(chart_id="c1", title="Facturé et payé", description="d",
                                 series=TWO, groups=groups, empty="rien"))
    assert svg.get("role") == "img" and svg.get("aria-labelledby") == "c1-title c1-desc"
    assert svg.find(f"{SVG}title").text == "Facturé et payé"
    titles = [rect.find(f"{SVG}title").text for rect in bars(svg)]
    assert titles == ["janv. 26 – Billed: 1 234,56 EUR", "janv. 26 – Paid: 78,90 EUR",
                      "févr. 26 – Billed: 0,00 EUR", "févr. 26 – Paid: 1,00 EUR"]
    texts = [text.text for text in svg.iter(f"{SVG}text")]
    assert "Billed" in texts and "Paid" in texts  # the legend
    assert "janv. 26" in texts and "févr. 26" in texts  # the labels under the columns


def test_every_text_is_escaped() -> None:
    evil = '<script>alert("x")</script>&'
    markup = str(charts.bar_chart(
        chart_id='x" onload="alert(1)', title=evil, description=evil,
        series=[charts.Series(evil, "#000000")],
        groups=[charts.Group(evil, (5,), (evil,))], empty=evil, horizontal=True))
    assert "<script>" not in markup and 'onload="' not in markup
    assert "&lt;script&gt;" in markup and "&amp;" in markup
    svg = parse(markup)  # still well-formed
    assert bars(svg)[0].find(f"{SVG}title").text == f"{evil}: {evil}"
    with pytest.raises(ValueError):
        charts.Series("x", 'red" onclick="alert(1)')  # a colour is a colour


def test_empty_and_zero_charts_say_so() -> None:
    for groups in ([], [charts.Group("a", (0,), ("0",))]):
        svg = parse(charts.bar_chart(chart_id="e", title="t", description="d", series=ONE,
                                     groups=groups, empty="Nothing yet"))
        assert "Nothing yet" in [text.text for text in svg.iter(f"{SVG}text")]


def test_floats_and_mismatched_groups_are_refused() -> None:
    with pytest.raises(TypeError):
        charts.Group("a", (1.5,), ("1.5",))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        charts.Group("a", (1, 2), ("1",))
    with pytest.raises(ValueError):
        charts.bar_chart(chart_id="m", title="t", description="d", series=TWO,
                         groups=[charts.Group("a", (1,), ("1",))], empty="")


def test_long_labels_are_shortened_on_the_chart_but_whole_in_the_title() -> None:
    label = "Assuré non couvert à la date de la prestation (PERSONNE_NON_COUVERTE)"
    svg = parse(charts.bar_chart(chart_id="l", title="t", description="d", series=ONE,
                                 groups=[charts.Group(label, (3,), ("3 %",))] * 12,
                                 empty=""))
    shown = [text.text for text in svg.iter(f"{SVG}text") if text.text and "Assuré" in text.text]
    assert shown and all(text.endswith("…") and len(text) < len(label) for text in shown)
    assert bars(svg)[0].find(f"{SVG}title").text == f"{label}: 3 %"


def test_no_inline_style_and_no_float_in_coordinates() -> None:
    markup = str(charts.bar_chart(chart_id="s", title="t", description="d", series=TWO,
                                  groups=[charts.Group(str(n), (n * 7, n * 3),
                                                       (str(n), str(n))) for n in range(1, 13)],
                                  empty=""))
    assert "style=" not in markup and "<script" not in markup
    for value in re.findall(r' (?:x|y|width|height)="([^"]+)"', markup):
        assert re.fullmatch(r"-?\d+(\.\d{1,2})?", value), value


def test_the_dashboards_months_and_rates() -> None:
    from datetime import date

    months = last_months(date(2026, 2, 14))
    assert len(months) == 12
    assert months[0] == Month(2025, 3) and months[-1] == Month(2026, 2)
    assert percent(1, 3) == Decimal("33.3") and percent(2, 3) == Decimal("66.7")
    assert percent(5, 0) == Decimal("0.0")
