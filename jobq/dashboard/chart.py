"""The overview's chart of jobs ended per minute, as SVG drawn on the server: no script (the
Content-Security-Policy allows none inline) and nothing from a job in it, only counts and times.
"""

from __future__ import annotations

import datetime

from .html import Safe, el
from .views import Activity

__all__ = ["activity"]

WIDTH, HEIGHT = 720, 150
LEFT, RIGHT, TOP, BOTTOM = 40, 8, 18, 24  # margins: the scale's labels, the time labels
SERIES = (("succeeded", "succeeded", "#3a9d5d"), ("dead", "failed for good (dead)", "#c0392b"))


def activity(a: Activity) -> Safe:
    """Side-by-side bars per minute, one colour per series, each bar titled with its minute
    and count (the browser shows it on hover)."""
    minutes = len(next(iter(a.series.values())))
    top = max([1, *(n for counts in a.series.values() for n in counts)])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / minutes
    bar = slot / (len(SERIES) + 0.5)
    parts = [el("line", x1=LEFT, y1=TOP + plot_h, x2=WIDTH - RIGHT, y2=TOP + plot_h,
                stroke="#d8dee6"),
             el("text", f"{top:,}", x=LEFT - 4, y=TOP + 4, text_anchor="end"),
             el("text", "0", x=LEFT - 4, y=TOP + plot_h, text_anchor="end")]
    for i in range(minutes):
        moment = datetime.datetime.fromtimestamp(a.start + 60 * i, datetime.timezone.utc)
        for k, (key, label, colour) in enumerate(SERIES):
            n = a.series[key][i]
            if not n:
                continue
            h = max(1.0, plot_h * n / top)
            parts.append(el("rect", el("title", f"{moment:%H:%M} UTC: {n:,} {label}"),
                            x=f"{LEFT + i * slot + bar * (k + 0.25):.1f}",
                            y=f"{TOP + plot_h - h:.1f}", width=f"{bar:.1f}", height=f"{h:.1f}",
                            fill=colour, class_=key, data_minute=f"{moment:%H:%M}",
                            data_count=n))
    for i, text in ((0, f"{minutes}m ago"), (minutes // 2, f"{minutes - minutes // 2}m ago"),
                    (minutes - 1, "now")):
        parts.append(el("text", text, x=f"{LEFT + (i + 0.5) * slot:.1f}", y=HEIGHT - 6,
                        text_anchor="middle"))
    x = LEFT
    for key, label, colour in SERIES:
        more = "+" if key in a.capped else ""
        total = f"{sum(a.series[key]):,}{more}"
        parts += [el("rect", x=x, y=2, width=10, height=10, fill=colour),
                  el("text", f"{label}: {total}", x=x + 14, y=11)]
        x += 14 + 8 * len(f"{label}: {total}") + 16
    return el("svg", *parts, viewBox=f"0 0 {WIDTH} {HEIGHT}", width=WIDTH, height=HEIGHT,
              role="img", id="activity", class_="chart",
              aria_label=f"jobs ended per minute, the last {minutes} minutes")
