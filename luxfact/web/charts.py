"""Bar charts drawn by the server as inline SVG: no script, no library, no float.

Pure functions: figures in (integer cents, counts or Decimal rates), markup out. Every text
(title, labels, values, series names) is escaped here, so the markup can be placed in a page
as it is; every bar carries a `<title>` with its figure (a tooltip, and what a screen reader
reads). The page shows the same figures in a table below each chart.

Positions are Decimal, rounded half up to the hundredth of a pixel: a bar's height is its
value over the largest, times the plot's height, exactly.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from markupsafe import Markup

Number = int | Decimal
PIXEL = Decimal("0.01")
COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
CHAR_WIDTH = Decimal("6.5")  # an average character at 12 px, to shorten labels that overflow
INK, MUTED = "#1d2430", "#5b6472"


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    colour: str

    def __post_init__(self) -> None:
        if not COLOUR.match(self.colour):
            raise ValueError(f"not a colour: {self.colour!r}")


@dataclass(frozen=True, slots=True)
class Group:
    """One category: its label, one value per series, and each value as the page shows it."""

    label: str
    values: tuple[Number, ...]
    shown: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.values) != len(self.shown):
            raise ValueError("one shown text per value")
        if any(isinstance(value, (float, bool)) for value in self.values):
            raise TypeError("values are int or Decimal, never float or bool")


@dataclass(frozen=True, slots=True)
class Bar:
    """A bar's rectangle in the chart's coordinates."""

    group: int
    series: int
    x: Decimal
    y: Decimal
    width: Decimal
    height: Decimal


def _px(value: Decimal | int) -> Decimal:
    return Decimal(value).quantize(PIXEL, ROUND_HALF_UP)


def _n(value: Decimal) -> str:
    """A coordinate as SVG wants it: no exponent, no needless zeros."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _scale(value: Number, top: Number, length: Decimal | int) -> Decimal:
    """`value`'s share of `length`, where `top` fills it; negatives draw nothing."""
    if top <= 0 or value <= 0:
        return Decimal(0)
    return _px(Decimal(value) * Decimal(length) / Decimal(top))


def _top(groups: Sequence[Group]) -> Number:
    return max((value for group in groups for value in group.values), default=0)


def _shorten(text: str, room: Decimal) -> str:
    most = max(3, int(room / CHAR_WIDTH))
    return text if len(text) <= most else text[:most - 1].rstrip() + "…"


# --------------------------------------------------------------------------- geometry

WIDTH = 720
SIDE, TOP, BOTTOM = 12, 32, 40
PLOT_HEIGHT = 200
LABEL_WIDTH = 250
VALUE_ROOM = 96
ROW = 30


def column_bars(groups: Sequence[Group], series: int, width: int = WIDTH,
                plot_height: int = PLOT_HEIGHT) -> list[Bar]:
    """Vertical bars, side by side per group (months: one group per month)."""
    if not groups:
        return []
    slot = Decimal(width - 2 * SIDE) / len(groups)
    bar_width = slot * Decimal("0.8") / series
    base = TOP + plot_height
    top = _top(groups)
    bars = []
    for i, group in enumerate(groups):
        for j, value in enumerate(group.values):
            height = _scale(value, top, plot_height)
            bars.append(Bar(i, j, _px(SIDE + slot * i + slot * Decimal("0.1") + bar_width * j),
                            _px(base - height), _px(bar_width), height))
    return bars


def _rows_top(series: int) -> int:
    """Where the rows start: below the legend, which only several series have."""
    return TOP if series > 1 else 8


def row_bars(groups: Sequence[Group], series: int, width: int = WIDTH) -> list[Bar]:
    """Horizontal bars, one row per group (long labels: anomaly codes, ages)."""
    top_y = _rows_top(series)
    plot = width - SIDE * 2 - LABEL_WIDTH - VALUE_ROOM
    bar_height = Decimal(ROW - 10) / series
    top = _top(groups)
    bars = []
    for i, group in enumerate(groups):
        for j, value in enumerate(group.values):
            bars.append(Bar(i, j, Decimal(SIDE + LABEL_WIDTH),
                            _px(top_y + ROW * i + 5 + bar_height * j),
                            _scale(value, top, plot), _px(bar_height)))
    return bars


# ----------------------------------------------------------------------------- markup
# Every fragment is a literal template; `Markup.format` escapes what fills it.

_SVG = Markup('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" '
              'height="{h}" role="img" aria-labelledby="{id}-title {id}-desc" '
              'font-family="system-ui, sans-serif" font-size="12" fill="{ink}">'
              '<title id="{id}-title">{title}</title><desc id="{id}-desc">{desc}</desc>')
_EMPTY = Markup('<text x="{x}" y="{y}" text-anchor="middle" fill="{fill}">{text}</text>')
_KEY = Markup('<rect x="{x}" y="8" width="12" height="12" fill="{fill}"/>'
              '<text x="{tx}" y="18">{text}</text>')
_BAR = Markup('<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{fill}">'
              '<title>{title}</title></rect>')
_AXIS = Markup('<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{stroke}"/>')
_MIDDLE = Markup('<text x="{x}" y="{y}" text-anchor="middle">{text}</text>')
_END = Markup('<text x="{x}" y="{y}" text-anchor="end">{text}</text>')
_START = Markup('<text x="{x}" y="{y}">{text}</text>')


def bar_chart(*, chart_id: str, title: str, description: str, series: Sequence[Series],
              groups: Sequence[Group], empty: str, horizontal: bool = False,
              width: int = WIDTH) -> Markup:
    """The chart as an `<svg>` element, every text escaped."""
    if not series:
        raise ValueError("a chart needs at least one series")
    if any(len(group.values) != len(series) for group in groups):
        raise ValueError("one value per series in every group")
    if horizontal:
        height = _rows_top(len(series)) + ROW * max(len(groups), 1) + 8
        bars = row_bars(groups, len(series), width)
    else:
        height = TOP + PLOT_HEIGHT + BOTTOM
        bars = column_bars(groups, len(series), width)
    out = [_SVG.format(w=width, h=height, id=chart_id, ink=INK, title=title,
                       desc=description)]
    out += _legend(series)
    if not groups or _top(groups) <= 0:
        out.append(_EMPTY.format(x=width // 2, y=height // 2 + 4, fill=MUTED, text=empty))
    elif horizontal:
        out += _rows(groups, series, bars)
    else:
        out += _columns(groups, series, bars, width)
    out.append(Markup("</svg>"))
    return Markup("").join(out)


def _legend(series: Sequence[Series]) -> list[Markup]:
    if len(series) < 2:
        return []
    out, x = [Markup('<g class="legend">')], SIDE
    for item in series:
        out.append(_KEY.format(x=x, fill=item.colour, tx=x + 18, text=item.name))
        x += 30 + int(len(item.name) * CHAR_WIDTH)
    out.append(Markup("</g>"))
    return out


def _bar(bar: Bar, colour: str, label: str) -> Markup:
    return _BAR.format(x=_n(bar.x), y=_n(bar.y), w=_n(bar.width), h=_n(bar.height),
                       fill=colour, title=label)


def _what(group: Group, series: Sequence[Series], j: int) -> str:
    name = f" – {series[j].name}" if len(series) > 1 else ""
    return f"{group.label}{name}: {group.shown[j]}"


def _columns(groups: Sequence[Group], series: Sequence[Series], bars: list[Bar],
             width: int) -> list[Markup]:
    base = TOP + PLOT_HEIGHT
    slot = Decimal(width - 2 * SIDE) / len(groups)
    out = [_AXIS.format(x1=SIDE, x2=width - SIDE, y=base, stroke=MUTED)]
    for bar in bars:
        group = groups[bar.group]
        out.append(_bar(bar, series[bar.series].colour, _what(group, series, bar.series)))
    for i, group in enumerate(groups):
        centre = _px(SIDE + slot * i + slot / 2)
        out.append(_MIDDLE.format(x=_n(centre), y=base + 18,
                                  text=_shorten(group.label, slot)))
    return out


def _rows(groups: Sequence[Group], series: Sequence[Series], bars: list[Bar]) -> list[Markup]:
    out, top_y = [], _rows_top(len(series))
    for i, group in enumerate(groups):
        out.append(_END.format(x=SIDE + LABEL_WIDTH - 8, y=top_y + ROW * i + ROW // 2 + 4,
                               text=_shorten(group.label, Decimal(LABEL_WIDTH - 8))))
    for bar in bars:
        group = groups[bar.group]
        out.append(_bar(bar, series[bar.series].colour, _what(group, series, bar.series)))
        if len(series) == 1:
            out.append(_START.format(x=_n(_px(bar.x + bar.width + 6)),
                                     y=_n(_px(bar.y + bar.height / 2 + 4)),
                                     text=group.shown[bar.series]))
    return out
