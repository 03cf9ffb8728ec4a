"""The digest's trend chart: the last days' repeat rate, conversion and orders as a small PNG, and as text.

``render_png`` draws three small panels side by side (a line for each rate, bars for orders per day) with
Pillow, imported inside the function so that importing this module (the DAG's tasks do) costs nothing.
Pillow's drawing is not anti-aliased, so the chart is drawn at twice its output size and scaled down.
The output is 1200 × 392 pixels, meant to be shown at 600 × 196 (sharp on high-density screens).
``sparkline`` is the same trend in block characters, for Slack webhooks (they cannot carry an image) and
the email's plain-text part.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from greenery.trend import Point

# Output size in CSS pixels; the PNG has SCALE times as many pixels in each direction.
WIDTH, HEIGHT, SCALE = 600, 196, 2
_SUPERSAMPLE = 2  # drawn at SCALE × _SUPERSAMPLE, then scaled down: smooth lines without anti-aliasing
_PAD, _GAP = 14, 22
_INK, _MUTED, _GUIDE = (38, 50, 56), (96, 108, 116), (222, 226, 230)
_BLOCKS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Series:
    label: str
    values: list[float | None]
    color: tuple[int, int, int]
    kind: str  # "line" or "bars"
    fmt: str  # "pct" or "int"

    def text(self, value: float | None) -> str:
        if value is None:
            return "n/a"
        return f"{value:.1%}" if self.fmt == "pct" else f"{value:,.0f}"


def series_of(points: Sequence[Point]) -> list[Series]:
    """The three panels, in the order they are drawn (and described)."""
    return [
        Series("Repeat rate", [p.repeat_rate for p in points], (46, 125, 50), "line", "pct"),
        Series("Session conversion", [p.conversion_rate for p in points], (21, 101, 192), "line", "pct"),
        Series("Orders per day", [float(p.orders) for p in points], (191, 120, 24), "bars", "int"),
    ]


def latest(values: Sequence[float | None]) -> float | None:
    return next((v for v in reversed(values) if v is not None), None)


def note(s: Series, days: Sequence) -> str | None:
    """The series over the window in words: a rate's move since its first figure ("+1.2 pts since Feb 10"),
    the orders' total ("361 in 28 days"); None for a rate with fewer than two figures."""
    if s.fmt != "pct":
        return f"{sum(v for v in s.values if v is not None):,.0f} in {len(s.values)} days"
    known = [(day, v) for day, v in zip(days, s.values, strict=True) if v is not None]
    if len(known) < 2:
        return None
    return f"{(known[-1][1] - known[0][1]) * 100:+.1f} pts since {known[0][0]:%b %d}"


def sparkline(values: Sequence[float | None]) -> str:
    """One block character per value, scaled between the series' min and max; "·" where there is none."""
    known = [v for v in values if v is not None]
    if not known:
        return "·" * len(values)
    low, high = min(known), max(known)
    top = len(_BLOCKS) - 1
    return "".join(
        "·" if v is None else _BLOCKS[round((v - low) / (high - low) * top) if high > low else top // 2] for v in values
    )


def describe(points: Sequence[Point]) -> str:
    """Alt text: what the chart shows, in words."""
    if not points:
        return "No trend: no days to show."
    parts = []
    for s in series_of(points):
        first = next((v for v in s.values if v is not None), None)
        parts.append(f"{s.label.lower()} {s.text(latest(s.values))} (from {s.text(first)})")
    return f"Last {len(points)} days to {points[-1].day.isoformat()}: " + "; ".join(parts) + "."


def render_png(points: Sequence[Point]) -> bytes:
    """The chart as PNG bytes (RGB, 1200 × 392); days without a figure leave a gap in the line."""
    from PIL import Image, ImageDraw, ImageFont

    k = SCALE * _SUPERSAMPLE
    image = Image.new("RGB", (WIDTH * k, HEIGHT * k), "white")
    draw = ImageDraw.Draw(image)
    fonts = {size: ImageFont.load_default(size=size * k) for size in (10, 12, 22)}
    panel_w = (WIDTH - 2 * _PAD - 2 * _GAP) / 3
    for i, s in enumerate(series_of(points)):
        x0 = _PAD + i * (panel_w + _GAP)
        _panel(draw, fonts, s, [p.day for p in points], (x0 * k, _PAD * k, (x0 + panel_w) * k, (HEIGHT - 8) * k), k)
    image = image.resize((WIDTH * SCALE, HEIGHT * SCALE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _panel(draw, fonts, s: Series, days, box, k: int) -> None:
    left, top, right, bottom = box
    draw.text((left, top), s.label, font=fonts[12], fill=_MUTED)
    draw.text((left, top + 15 * k), s.text(latest(s.values)), font=fonts[22], fill=s.color)
    # The plot: between the headline and the dates; the series' max on the top guide, its min (0 for bars)
    # on the bottom one, so the reader sees the scale without axes.
    plot_top, plot_bottom = top + 58 * k, bottom - 30 * k
    known = [v for v in s.values if v is not None]
    low = 0.0 if s.kind == "bars" else min(known, default=0.0)
    high = max(known, default=0.0)
    if high == low:  # one value, or a flat line: draw it in the middle
        low, high = low - 1, high + 1
    for y in (plot_top, plot_bottom):
        draw.line([(left, y), (right, y)], fill=_GUIDE, width=k)
    if known:
        draw.text((right, plot_top - 2 * k), s.text(max(known)), font=fonts[10], fill=_MUTED, anchor="rd")
        floor = 0.0 if s.kind == "bars" else min(known)
        if floor != max(known):  # one value needs one label
            draw.text((right, plot_bottom + 2 * k), s.text(floor), font=fonts[10], fill=_MUTED, anchor="ra")

    n = max(len(s.values), 1)
    step = (right - left) / n

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + step * (i + 0.5), plot_bottom - (v - low) / (high - low) * (plot_bottom - plot_top)

    if s.kind == "bars":
        for i, v in enumerate(s.values):
            if v:
                x, y = xy(i, v)
                draw.rectangle([x - step * 0.35, y, x + step * 0.35, plot_bottom], fill=s.color)
    else:
        for i in range(1, n):
            a, b = s.values[i - 1], s.values[i]
            if a is not None and b is not None:
                draw.line([xy(i - 1, a), xy(i, b)], fill=s.color, width=2 * k, joint="curve")
        for i, v in enumerate(s.values):
            alone = (i == 0 or s.values[i - 1] is None) and (i == n - 1 or s.values[i + 1] is None)
            if v is not None and (alone or i == n - 1):  # a point with no neighbour, and today's
                x, y = xy(i, v)
                r = 3 * k
                draw.ellipse([x - r, y - r, x + r, y + r], fill=s.color)
    if days:
        draw.text((left, bottom), f"{days[0]:%b %d}", font=fonts[10], fill=_MUTED, anchor="ld")
        draw.text((right, bottom), f"{days[-1]:%b %d}", font=fonts[10], fill=_MUTED, anchor="rd")


def as_text(points: Sequence[Point]) -> str:
    """The digest chart's series as text sparklines (what a webhook, which cannot carry an image, shows)."""
    span = f" ({points[0].day:%b %d} to {points[-1].day:%b %d})" if points else ""
    lines = [f"*Last {len(points)} days*{span}"]
    for s in series_of(points):
        said = note(s, [p.day for p in points])
        lines.append(
            f"`{sparkline(s.values)}` {s.label}: *{s.text(latest(s.values))}*" + (f" ({said})" if said else "")
        )
    return "\n".join(lines)
