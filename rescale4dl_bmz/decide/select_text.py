"""The selection in words: the reason, the caveats, the statement, the printed report and the
JSON-ready rows. The rules (`decide.select`, `decide.equivalence`) decide; this module only says.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from rescale4dl_bmz.errors import STAGE_WORDS
from rescale4dl_bmz.factors import parse_factor

if TYPE_CHECKING:
    import pandas as pd

    from rescale4dl_bmz.decide.select import Selection

GAIN_LABELS = {"objects_per_fov": "objects per field of view", "storage_per_object": "storage per object",
               "inference_speed": "inference speed"}


def describe_pixel_size(pixel_size_um: float | None, scale: float) -> str:
    """'0.32 µm', or '4x the original pixel size' when the original is unknown."""
    if pixel_size_um is not None:
        return f"{pixel_size_um:.4g} µm"
    return f"{scale:g}x the original pixel size"


def statement(selection: Selection) -> str:
    """The recommendation in words, the caveat first."""
    s = selection
    text = f"recommended pixel size: {s.pixel_size_text} (factor {s.factor}); {s.reason}"
    return f"{s.caveat} {text[0].upper()}{text[1:]}" if s.caveat else text


def table_records(table: pd.DataFrame) -> list[dict]:
    """Rows as plain dicts with Python scalars; NaN becomes None."""
    return [{k: _plain(v) for k, v in row.items()} for row in table.to_dict(orient="records")]


def _plain(v):
    import pandas as pd

    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else float(v)
    if v is None or (isinstance(v, str)):
        return v
    try:
        return None if pd.isna(v) else v
    except (TypeError, ValueError):
        return v


# ----------------------------------------------------------------------------- reason

def reason_text(criterion: str, table: pd.DataFrame, idx: int, best: int) -> str:
    """Why factor `idx` was chosen (`best`: the highest mean IoU), in one or two sentences."""
    row, brow = table.loc[idx], table.loc[best]
    grid = f" on the {row['grid']} grid" if "grid" in table.columns else ""
    where = f"{row['factor']}: mean IoU {_iou_text(row)}{grid}"
    if criterion == "max-iou":
        return f"{where} is the highest mean IoU of {len(table)} finished factors."
    if criterion == "iou-x-throughput":
        return f"{where}; mean IoU x throughput = {row['score']:.4g} is the highest of {len(table)} factors."
    if criterion == "diameter-fidelity":
        return (f"{where}; its predicted object diameters deviate least from the ground truth "
                f"(relative error {row['score']:.3g}).")
    if idx == best:
        coarser = table[table["scale"] > row["scale"]]
        tail = ""
        if not coarser.empty:
            worst = coarser.iloc[0]
            tail = f" No coarser factor is equivalent ({worst['factor']}: {_why_not(worst)})."
        return f"{where} is the best factor and the coarsest equivalent one.{tail}"
    why = (f"practically equivalent to the best: IoU difference {_diff_text(row)} stays above "
           f"-{row['margin']:g} ({row['test']})")
    return (f"{where} is the coarsest factor whose IoU is {why}; best: {brow['factor']} "
            f"{_iou_text(brow)}.")


def _iou_text(row: pd.Series) -> str:
    import pandas as pd

    text = f"{row['iou_mean']:.3f}"
    lo, hi = row.get("iou_ci_low", np.nan), row.get("iou_ci_high", np.nan)
    enough = pd.isna(row.get("n_images", np.nan)) or row.get("n_images") >= 2  # one image has no interval
    if pd.notna(lo) and pd.notna(hi) and enough:
        text += f" (95% CI {float(lo):.3f}-{float(hi):.3f})"
    return text


def _diff_text(row: pd.Series) -> str:
    """'-0.012 (95% CI -0.020 to -0.004)' or '-0.012'."""
    import pandas as pd

    text = f"{row['iou_diff']:+.3f}"
    if pd.notna(row.get("iou_diff_ci_low")) and pd.notna(row.get("iou_diff_ci_high")):
        text += f" (95% CI {row['iou_diff_ci_low']:+.3f} to {row['iou_diff_ci_high']:+.3f})"
    return text


def _why_not(row: pd.Series) -> str:
    lower = f", lower on {int(row['n_lower_by_margin'])} of {int(row['n_paired'])} images by more than the margin" \
        if row.get("n_paired", 0) else ""
    return f"{row['decision']}: IoU difference {_diff_text(row)} vs margin -{row['margin']:g}{lower}"


# ----------------------------------------------------------------------------- caveat

def caveat_text(baseline: str, og_absence: str | None, failed: dict[str, str], trust_issues: tuple[str, ...],
                best_row: pd.Series) -> str | None:
    """What the answer cannot rest on, in words, or None: og missing (`og_absence`: 'failed',
    'pruned' or 'not in sweep'), other failed factors, and `trust_issues` ('untrained',
    'one image') of the ranking itself (`best_row`: the highest mean IoU)."""
    parts = []
    if og_absence == "failed":
        parts.append(f"The original sampling (og) failed{_stage_text(failed['og'])}, so nothing here is compared "
                     f"with it: gains are stated against {baseline}, the finest factor that finished.")
    elif og_absence is not None:
        why = {"pruned": "was pruned", "stopped": "was stopped early by successive halving"}.get(
            og_absence, "was not in this sweep")
        parts.append(f"The original sampling (og) {why}: gains are stated against {baseline}, the finest factor "
                     "that finished.")
    others = {f: st for f, st in failed.items() if f != "og"}
    if others:
        listed = ", ".join(f"{f}{_stage_text(st)}"
                           for f, st in sorted(others.items(), key=lambda x: parse_factor(x[0]).scale))
        parts.append(f"{len(others)} factor(s) failed and are not compared: {listed}; the answer is partial.")
    if "untrained" in trust_issues:
        parts.append(f"The best mean IoU is only {best_row['iou_mean']:.2f} ({best_row['factor']}): the models have "
                     "not learned to segment these images (too short a training, or too few annotations), so this "
                     "ranking says nothing about the pixel size; train longer before acting on it.")
    if "one image" in trust_issues:
        parts.append("Only one test image was evaluated, so factors are compared by their means alone, with no "
                     "interval or test behind them; hold out more images for a decision you can rely on.")
    return " ".join(parts) or None


def _stage_text(stage: str) -> str:
    return f" during {STAGE_WORDS.get(stage, stage)}" if stage else ""


# ----------------------------------------------------------------------------- report

def gains_lines(selection: Selection) -> list[str]:
    """One line per gain against the baseline: ratio, '(Nx less)' below 1, and its basis."""
    lines = []
    for key, label in GAIN_LABELS.items():
        g = selection.gains.get(key)
        if g:
            less = f" ({1 / g['ratio']:.3g}x less)" if g["ratio"] < 1 else ""
            lines.append(f"  {label}: x{g['ratio']:.3g}{less} [{g['basis']}]")
    return lines


def ranking_lines(table: pd.DataFrame) -> list[str]:
    """The ranking table, one aligned line per factor, the chosen one marked '->'."""
    import pandas as pd

    heads = ["", "factor", "pixel size", "mean IoU", "95% CI", "diff vs best (95% CI)", "p", "decision"]
    rows = []
    for _, r in table.iterrows():
        ci = ""
        if pd.notna(r.get("iou_ci_low", np.nan)) and pd.notna(r.get("iou_ci_high", np.nan)):
            ci = f"{float(r['iou_ci_low']):.3f}-{float(r['iou_ci_high']):.3f}"
        px = "" if r["pixel_size_um"] is None or pd.isna(r["pixel_size_um"]) else f"{r['pixel_size_um']:.4g} µm"
        p = "" if pd.isna(r["p_value"]) else f"{r['p_value']:.3g}"
        rows.append(["->" if r["chosen"] else "", r["factor"], px, f"{r['iou_mean']:.3f}", ci,
                     _diff_text(r).replace("95% CI ", ""), p, r["decision"]])
    widths = [max(len(str(x)) for x in col) for col in zip(heads, *rows)]
    return ["  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip() for cells in [heads] + rows]


def select_format(selection: Selection) -> str:
    """A short report: caveat, choice, pixel size, reason, gains against the baseline, ranking table."""
    s = selection
    lines = [f"Chosen factor: {s.factor} (scale {s.scale:g}, criterion {s.criterion})",
             f"Recommended pixel size: {s.pixel_size_text}",
             f"Why: {s.reason}", f"Gains against {s.baseline}:"]
    if s.caveat:
        lines.insert(0, f"NOTE: {s.caveat}")
    lines += gains_lines(s)
    lines.append("")
    lines += ranking_lines(s.table)
    return "\n".join(lines) + "\n"
