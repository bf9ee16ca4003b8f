"""Charts drawn on the server as SVG: no script, nothing fetched, every label escaped.
Presentation attributes rather than style attributes, which the CSP would refuse."""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
BAR_COLOUR = "#417690"  # the admin's own blue


def bars(values: Sequence[tuple[str, int]], *, title: str, width: int = 640, height: int = 160) -> SafeString:
    """A bar per value, labelled by its first and last key and the tallest count."""
    top = max((count for _, count in values), default=0) or 1
    step = width / max(1, len(values))
    rects = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}: {}</title></rect>',
        (
            (
                f"{n * step:.1f}",
                f"{height - 20 - (count / top) * (height - 40):.1f}",
                f"{max(1.0, step - 2):.1f}",
                f"{(count / top) * (height - 40):.1f}",
                BAR_COLOUR,
                label,
                count,
            )
            for n, (label, count) in enumerate(values)
        ),
    )
    first = values[0][0] if values else ""
    last = values[-1][0] if values else ""
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{}" height="{}" viewBox="0 0 {} {}">'
        "<title>{}</title>{}"
        '<text x="0" y="{}" font-size="11">{}</text>'
        '<text x="{}" y="{}" font-size="11" text-anchor="end">{}</text>'
        '<text x="0" y="12" font-size="11">max {}</text></svg>',
        width,
        height,
        width,
        height,
        title,
        rects,
        height - 4,
        first,
        width,
        height - 4,
        last,
        top if values else 0,
    )


def heatmap(grid: Sequence[Sequence[int]], *, title: str, cell: int = 22) -> SafeString:
    """Weekdays down, hours across; darker is more."""
    top = max((count for row in grid for count in row), default=0) or 1
    left, head = 36, 16
    cells = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}" fill-opacity="{}" stroke="#ddd">'
        "<title>{} {}:00: {}</title></rect>",
        (
            (
                left + hour * cell,
                head + day * cell,
                cell,
                cell,
                BAR_COLOUR,
                f"{0.08 + 0.92 * count / top if count else 0.0:.2f}",
                WEEKDAYS[day],
                f"{hour:02d}",
                count,
            )
            for day, row in enumerate(grid)
            for hour, count in enumerate(row)
        ),
    )
    days = format_html_join(
        "",
        '<text x="0" y="{}" font-size="11">{}</text>',
        ((head + day * cell + cell - 7, name) for day, name in enumerate(WEEKDAYS)),
    )
    hours = format_html_join(
        "",
        '<text x="{}" y="11" font-size="10">{}</text>',
        ((left + hour * cell + 3, f"{hour:02d}") for hour in range(0, 24, 3)),
    )
    width, height = left + 24 * cell, head + 7 * cell
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{}" height="{}" viewBox="0 0 {} {}">'
        "<title>{}</title>{}{}{}</svg>",
        width,
        height,
        width,
        height,
        title,
        days,
        hours,
        cells,
    )
