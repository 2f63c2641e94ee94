"""Result tables for people: the columns to show, under human headers, with units and rounding a
biologist reads at a glance (0.812 (0.80–0.84), 2,620 cells / s, 31 kB, 1.2 min); and markdown."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import pandas as pd

# (column, header, formatter name). The first column found of each entry is shown; order = table order.
QUALITY_COLUMNS = (
    ("factor", "Factor", "text"),
    ("pixel_size_um", "Pixel size (µm)", "sig3"),
    ("status", "Status", "text"),
    ("iou_mean", "Mean IoU (95 % CI)", "iou_ci"),
    ("p_vs_best", "p vs best", "p"),
    ("gt_mean_diameter_px", "Object diameter (px)", "fixed1"),
    ("pct_diameter_per_pixel", "% of diameter per pixel", "sig3"),
)

COST_COLUMNS = (
    ("factor", "Factor", "text"),
    ("throughput", "Throughput (cells / s)", "count"),
    ("bytes_per_object", "Storage per cell", "bytes"),
    ("wall_time_s", "Training time", "duration"),
    ("steps", "Training steps", "int"),
    ("inference_s_per_image", "Prediction time per image", "duration"),
)


def _fmt(value, kind: str, row: Mapping | None = None) -> str:
    """One cell as text by its formatter name (`row` gives the CI bounds of an `iou_ci` cell)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if kind == "text":
        return str(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return "–"
    if kind == "iou_ci":
        lo, hi = (row or {}).get("iou_ci_low"), (row or {}).get("iou_ci_high")
        if lo is not None and hi is not None and pd.notna(lo) and pd.notna(hi) and float(hi) - float(lo) > 5e-4:
            return f"{v:.3f} ({float(lo):.3f}–{float(hi):.3f})"
        return f"{v:.3f}"
    if kind == "p":
        return "< 0.001" if v < 0.001 else f"{v:.2g}"
    if kind == "sig3":
        return significant(v, 3)
    if kind == "fixed1":
        return f"{v:.1f}"
    if kind == "int":
        return f"{int(round(v)):,}"
    if kind == "count":
        return significant(v, 3) if v < 100 else f"{round(v):,.0f}"
    if kind == "bytes":
        for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
            if v >= size:
                return f"{v / size:.3g} {unit}"
        return f"{v:.0f} B"
    if kind == "duration":
        if v < 1:
            return f"{v * 1000:.0f} ms"
        if v < 120:
            return f"{v:.1f} s" if v < 10 else f"{v:.0f} s"
        return f"{v / 60:.1f} min" if v < 7200 else f"{v / 3600:.1f} h"
    return significant(v, 3)


def significant(v: float, digits: int) -> str:
    """Round to `digits` significant digits without scientific notation (0.000123, 2,620)."""
    if v == 0:
        return "0"
    exp = math.floor(math.log10(abs(v)))
    decimals = max(digits - 1 - exp, 0)
    return f"{round(v, decimals):,.{decimals}f}"


def human_table(df: pd.DataFrame, columns: Sequence[tuple[str, str, str]]) -> pd.DataFrame:
    """The columns of `columns` that `df` has, formatted as text under human headers."""
    present = [(c, h, k) for c, h, k in columns if c in df.columns
               and (k == "text" or pd.to_numeric(df[c], errors="coerce").notna().any())]  # no all-empty columns
    rows = []
    for rec in df.to_dict(orient="records"):
        rows.append([_fmt(rec.get(c), k, rec) for c, _, k in present])
    return pd.DataFrame(rows, columns=[h for _, h, _ in present])


def markdown_table(df: pd.DataFrame, floatfmt: str = ".3g") -> str:
    """A GitHub-style markdown table (no extra dependency)."""
    def fmt(v):
        if isinstance(v, float):
            return "" if math.isnan(v) else format(v, floatfmt)
        return "" if v is None else str(v).replace("|", "\\|")

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "| " + " | ".join("---" for _ in df.columns) + " |"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])

