"""The acquisition plan (`decide.acquisition`) as a table people read: plain text or markdown."""

from __future__ import annotations

import pandas as pd


def plan_format(plan: pd.DataFrame, markdown: bool = False) -> str:
    """The plan as a readable table (plain text, or markdown); the chosen factor is marked."""
    headers = ["", "factor", "pixel size", "field of view", "objects/field", "objects/hour",
               "data/hour", "data/object"]
    lines = []
    for r in plan.itertuples(index=False):
        px = "unknown" if r.pixel_size_um is None or pd.isna(r.pixel_size_um) else f"{r.pixel_size_um:.4g} µm"
        fov = ("-" if r.fov_width_um is None or pd.isna(r.fov_width_um)
               else f"{r.fov_width_um:.4g} x {r.fov_height_um:.4g} µm")
        lines.append(["->" if r.chosen else "", r.factor, px, fov, f"{r.objects_per_fov:,.0f}",
                      f"{r.objects_per_hour:,.0f}", plan_bytes(r.bytes_per_hour), plan_bytes(r.bytes_per_object)])
    if markdown:
        out = ["| " + " | ".join(h or "chosen" for h in headers) + " |", "|" + "---|" * len(headers)]
        for cells in lines:
            cells = ["**yes**" if cells[0] else ""] + [f"**{c}**" if cells[0] else c for c in cells[1:]]
            out.append("| " + " | ".join(cells) + " |")
        return "\n".join(out) + "\n"
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *lines)]
    fmt = lambda cells: "  ".join(str(c).ljust(wd) for c, wd in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(headers)] + [fmt(c) for c in lines]) + "\n"


def plan_bytes(n: float) -> str:
    """Human-readable byte count (kB, MB, GB: powers of 1000)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"
