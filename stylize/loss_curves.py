"""The loss curves of a training run as an inline SVG (no plotting library).

:func:`loss_curves_svg` draws ``Style.training_progress["history"]`` (a list of
``[step, {term: value}]``) as one polyline per loss term, with axes, tick labels, a
legend, and a ``<title>``/``<desc>`` for screen readers (labels through gettext).

The output is safe to embed with ``mark_safe`` under the site's
Content-Security-Policy: it is built only from numbers this module formats and from
labels it escapes (term names, title), and uses SVG presentation attributes
(``stroke=``, ``fill=``), never ``style=``. Axes and text are ``currentColor``, so the
picture follows the admin's light or dark theme.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence

from django.utils.translation import gettext as _

#: Line colours, one per term in the order they first appear (readable on light and dark).
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf")

#: A log-scale y axis once the largest value is this many times the smallest.
LOG_SCALE_RATIO = 100.0

_LEFT, _RIGHT, _TOP = 64, 16, 28  # margins around the plot (px)
_AXIS = 30  # below the plot: tick labels and the axis name
_LEGEND_ROW = 18


def loss_curves_svg(history: Sequence, *, width: int = 640, height: int = 320,
                    title: str | None = None, id_prefix: str = "loss-curves") -> str:
    """An ``<svg>`` of ``history`` (``[[step, {term: value}], ...]``), or ``""`` when
    it holds no finite value to draw.

    One polyline per term (a single-point series also gets a dot); the y axis is
    logarithmic when every value is positive and they span more than
    :data:`LOG_SCALE_RATIO`, linear otherwise. Points that are not a number, or not
    positive on a log axis, are left out. ``title`` and the term names are escaped;
    ``id_prefix`` names the ``<title>``/``<desc>`` ids (unique on the page).
    """
    title = _("Loss curves") if title is None else title
    series = _series(history)
    values = [value for points in series.values() for _, value in points]
    if not values:
        return ""
    log = min(values) > 0 and max(values) / min(values) > LOG_SCALE_RATIO
    steps = [step for points in series.values() for step, _ in points]
    x_lo, x_hi = _padded(min(steps), max(steps))
    if log:
        y_lo = 10.0 ** math.floor(math.log10(min(values)))
        y_hi = 10.0 ** math.ceil(math.log10(max(values)))
        if y_hi <= y_lo:
            y_hi = y_lo * 10
        y_ticks = _log_ticks(y_lo, y_hi)
    else:
        y_ticks = _nice_ticks(*_padded(min(values), max(values)))
        y_lo, y_hi = y_ticks[0], y_ticks[-1]
    x_ticks = [t for t in _nice_ticks(x_lo, x_hi) if x_lo <= t <= x_hi]

    legend_rows = math.ceil(len(series) / 4)
    plot_bottom = height - _AXIS - legend_rows * _LEGEND_ROW - 8
    plot_w, plot_h = width - _LEFT - _RIGHT, plot_bottom - _TOP

    def x_of(step: float) -> float:
        return _LEFT + (step - x_lo) / (x_hi - x_lo) * plot_w

    def y_of(value: float) -> float:
        if log:
            share = (math.log10(value) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo))
        else:
            share = (value - y_lo) / (y_hi - y_lo)
        return plot_bottom - share * plot_h

    title_id, desc_id = f"{_attr(id_prefix)}-title", f"{_attr(id_prefix)}-desc"
    last = "; ".join(
        _("%(term)s %(value)s at step %(step)s")
        % {"term": name, "value": _number(points[-1][1]), "step": _number(points[-1][0])}
        for name, points in series.items())
    desc = (_("Loss per training step, logarithmic scale. Last values: %(last)s.") if log
            else _("Loss per training step, linear scale. Last values: %(last)s."))
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="loss-curves" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-labelledby="{title_id} {desc_id}" font-family="sans-serif" font-size="11">',
        f'<title id="{title_id}">{_text(title)}</title>',
        f'<desc id="{desc_id}">{_text(desc % {"last": last})}</desc>',
        _label(_LEFT, 16, title, ' font-size="12"'),
    ]
    # Grid, ticks and their labels.
    for tick in y_ticks:
        y = _coord(y_of(tick))
        out.append(_line(_LEFT, y, _LEFT + plot_w, y, ' stroke-opacity="0.15"'))
        out.append(_label(_LEFT - 6, y, _number(tick),
                          ' text-anchor="end" dominant-baseline="middle"'))
    for tick in x_ticks:
        x = _coord(x_of(tick))
        out.append(_line(x, plot_bottom, x, plot_bottom + 4))
        out.append(_label(x, plot_bottom + 16, _number(tick), ' text-anchor="middle"'))
    out.append(f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" fill="none" '
               'stroke="currentColor" stroke-opacity="0.5"/>')
    step_label = _("step")  # outside the f-string, where makemessages finds it
    out.append(_label(_LEFT + plot_w, plot_bottom + _AXIS, step_label, ' text-anchor="end"'))
    # One line per term, then the legend.
    for index, (name, points) in enumerate(series.items()):
        colour = PALETTE[index % len(PALETTE)]
        coords = " ".join(f"{_coord(x_of(s))},{_coord(y_of(v))}" for s, v in points)
        out.append(f'<polyline data-term="{_attr(name)}" points="{coords}" fill="none" '
                   f'stroke="{colour}" stroke-width="1.5" stroke-linejoin="round"/>')
        if len(points) == 1:
            [(step, value)] = points
            out.append(f'<circle cx="{_coord(x_of(step))}" cy="{_coord(y_of(value))}" r="3" '
                       f'fill="{colour}"/>')
    for index, name in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        row, column = divmod(index, 4)
        x = _LEFT + column * (plot_w / 4)
        y = plot_bottom + _AXIS + (row + 1) * _LEGEND_ROW
        out.append(f'<rect x="{_coord(x)}" y="{y - 8}" width="14" height="4" fill="{colour}"/>')
        out.append(_label(_coord(x + 20), y, name))
    out.append("</svg>")
    return "\n".join(out)


def _series(history: Iterable) -> dict[str, list[tuple[float, float]]]:
    """term -> [(step, value)] in step order, keeping only finite numbers."""
    series: dict[str, list[tuple[float, float]]] = {}
    for entry in history or ():
        try:
            step, terms = entry
            step = float(step)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(step) or not isinstance(terms, dict):
            continue
        for name, value in terms.items():
            number = _finite(value)
            if number is not None:
                series.setdefault(str(name), []).append((step, number))
    for points in series.values():
        points.sort(key=lambda point: point[0])
    return series


def _finite(value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _padded(lo: float, hi: float) -> tuple[float, float]:
    """A range around ``lo``..``hi`` that is never empty (one step, one value)."""
    if hi > lo:
        return lo, hi
    spread = abs(lo) * 0.1 or 1.0
    return lo - spread, hi + spread


def _nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round ticks (1, 2 or 5 times a power of ten apart) covering ``lo``..``hi``."""
    raw = (hi - lo) / max(1, count - 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(lo / step)
    last = max(math.ceil(hi / step), first + 1)
    return [float(f"{i * step:.12g}") for i in range(first, last + 1)]


def _log_ticks(lo: float, hi: float) -> list[float]:
    """The powers of ten from ``lo`` to ``hi`` (both powers of ten), at most 8 of them."""
    low, high = round(math.log10(lo)), round(math.log10(hi))
    stride = max(1, math.ceil((high - low) / 7))
    return [10.0 ** e for e in range(low, high + 1, stride)]


def _number(value: float) -> str:
    """A short label: 1000, 25k, 1M, 3e-05, 0.123."""
    if float(value).is_integer() and abs(value) < 1e4:
        return str(int(value))
    if 1e4 <= abs(value) < 1e6:
        return f"{value / 1e3:.3g}k"
    if 1e6 <= abs(value) < 1e9:
        return f"{value / 1e6:.3g}M"
    return f"{value:.3g}"


def _coord(value: float) -> str:
    return f"{value:.1f}"


def _line(x1, y1, x2, y2, attributes: str = "") -> str:
    """A ``<line>`` in ``currentColor``; ``attributes`` (formatted here) follow its own."""
    return f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="currentColor"{attributes}/>'


def _label(x, y, text: str, attributes: str = "") -> str:
    """A ``<text>`` of ``text`` (escaped) in ``currentColor``; ``attributes`` (formatted
    here) follow its own."""
    return f'<text x="{x}" y="{y}" fill="currentColor"{attributes}>{_text(text)}</text>'


def _text(value: str) -> str:
    """``value`` escaped for SVG/HTML text; ``=`` too, so that no text can ever read
    like an attribute (``onload=``) to anything scanning the page."""
    return html.escape(str(value), quote=True).replace("=", "&#61;")


def _attr(value: str) -> str:
    return _text(value)
