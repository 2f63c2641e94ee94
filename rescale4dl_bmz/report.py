"""Figures and the sweep report (markdown + HTML). Reads tables, never computes metrics.

Figures follow the paper's Fig. 3/4: IoU per factor as box plots placed at the factor's
% of diameter per pixel, with the theoretical throughput on a log-scale twin axis.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .dataset import atomic_path, write_text


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    _pyplot().close(fig)
    return path


def _order(df: pd.DataFrame) -> list[str]:
    return list(df.sort_values("scale")["factor"].drop_duplicates())


def plot_iou_vs_coverage(per_image: pd.DataFrame, summary: pd.DataFrame, path: str | Path,
                         grid: str = "native", chosen: str | None = None, title: str = "") -> Path:
    """IoU box plots per factor at x = % diameter per pixel (log), throughput on a log twin axis."""
    plt = _pyplot()
    path = Path(path)
    pi = per_image[per_image["grid"] == grid] if "grid" in per_image else per_image
    sm = summary[summary["grid"] == grid] if "grid" in summary else summary
    sm = sm.dropna(subset=["pct_diameter_per_pixel"]).sort_values("pct_diameter_per_pixel")
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    xs, data, labels = [], [], []
    for _, row in sm.iterrows():
        vals = pi.loc[pi["factor"] == row["factor"], "iou"].dropna().to_numpy()
        if vals.size:
            xs.append(row["pct_diameter_per_pixel"])
            data.append(vals)
            labels.append(row["factor"])
    if data:
        widths = [x * 0.18 for x in xs]  # equal width on the log axis
        bp = ax.boxplot(data, positions=xs, widths=widths, patch_artist=True, manage_ticks=False)
        for patch, name in zip(bp["boxes"], labels):
            patch.set_facecolor("#f4a261" if name == chosen else "#8ecae6")
        for x, vals, name in zip(xs, data, labels):  # every image's IoU on top of its box
            ax.plot(np.full(len(vals), x), vals, "o", ms=5, alpha=0.8,
                    color="#e76f51" if name == chosen else "#023047")
        for x, name in zip(xs, labels):
            ax.annotate(name, (x, 1.02), xycoords=("data", "axes fraction"), ha="center", fontsize=8,
                        fontweight="bold" if name == chosen else "normal")
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        ax.set_xscale("log")
        ax.set_xlim(min(xs) / 1.6, max(xs) * 1.6)
        ax.set_xticks(xs)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("% of object diameter per pixel")
    ax.set_ylabel(f"IoU ({grid} grid)")
    ax.set_ylim(0, 1)
    if "throughput" in sm and sm["throughput"].notna().any():
        ax2 = ax.twinx()
        ax2.plot(sm["pct_diameter_per_pixel"], sm["throughput"], "o--", color="#6a4c93", label="throughput")
        ax2.set_yscale("log")
        ax2.set_ylabel("throughput (objects per field per s)", color="#6a4c93")
    ax.set_title(title or "Segmentation quality vs sampling", pad=18)
    return _save(fig, path)


def plot_diameter_distributions(per_object: pd.DataFrame, path: str | Path, gt_col: str, pred_col: str,
                                grid: str = "native") -> Path:
    """Ground truth vs predicted object diameters, one panel per factor (same µm-free px axis)."""
    plt = _pyplot()
    po = per_object[per_object["grid"] == grid] if "grid" in per_object else per_object
    factors = _order(po)
    n = max(len(factors), 1)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, factors):
        sub = po[po["factor"] == name]
        gt = sub[gt_col].dropna().to_numpy() if gt_col in sub else np.array([])
        pr = sub[pred_col].dropna().to_numpy() if pred_col in sub else np.array([])
        both = np.concatenate([gt, pr])
        bins = np.linspace(both.min(), both.max(), 25) if both.size and both.max() > both.min() else 10
        ax.hist(gt, bins=bins, alpha=0.6, label="ground truth", color="#219ebc")
        ax.hist(pr, bins=bins, alpha=0.6, label="prediction", color="#fb8500")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("diameter (px, original grid)" if grid == "native" else "diameter (px)", fontsize=8)
    for ax in list(axes.flat)[len(factors):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, Path(path))


def plot_examples(examples: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]], path: str | Path) -> Path:
    """Rows of (image, ground truth, prediction) crops, one row per factor."""
    plt = _pyplot()
    n = max(len(examples), 1)
    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.5 * n), squeeze=False)
    for row, (name, image, gt, pred) in zip(axes, examples):
        lo, hi = np.percentile(image, (1, 99.8))
        row[0].imshow(image, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
        row[1].imshow(_colour(gt), interpolation="nearest")
        row[2].imshow(_colour(pred), interpolation="nearest")
        row[0].set_ylabel(name)
        for ax, t in zip(row, ("image", "ground truth", "prediction")):
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(t, fontsize=8)
    fig.tight_layout()
    return _save(fig, Path(path))


def _colour(labels: np.ndarray) -> np.ndarray:
    """Labels to RGB with a fixed pseudo-random palette (0 = black)."""
    labels = np.asarray(labels).astype(np.int64)
    top = int(labels.max()) if labels.size else 0
    if top <= 2:  # semantic 0/1/2: background, inner, edge
        return np.array([[0, 0, 0], [0.2, 0.6, 1.0], [1.0, 0.8, 0.1]])[labels]
    palette = np.random.default_rng(7).uniform(0.25, 1.0, size=(top + 1, 3))
    palette[0] = 0
    return palette[labels]


def markdown_table(df: pd.DataFrame, floatfmt: str = ".3g") -> str:
    """A GitHub-style markdown table (no extra dependency)."""
    def fmt(v):
        if isinstance(v, float):
            return "" if math.isnan(v) else format(v, floatfmt)
        return "" if v is None else str(v)

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "| " + " | ".join("---" for _ in df.columns) + " |"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def write_report(out: str | Path, sections: Sequence[tuple[str, str]], title: str = "rescale4dl sweep report") -> tuple[Path, Path]:
    """Write `report.md` and `report.html` from (heading, markdown body) sections."""
    out = Path(out)
    md = f"# {title}\n\n" + "\n\n".join(f"## {h}\n\n{body}" for h, body in sections) + "\n"
    write_text(out / "report.md", md)
    try:
        import markdown

        body = markdown.markdown(md, extensions=["tables"])
    except ImportError:  # pragma: no cover - markdown ships with tensorboard
        body = "<pre>" + md.replace("&", "&amp;").replace("<", "&lt;") + "</pre>"
    html = ("<!doctype html><html><head><meta charset='utf-8'><title>" + title + "</title>"
            "<style>body{font-family:sans-serif;max-width:980px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
            "img{max-width:100%}</style></head><body>" + body + "</body></html>\n")
    write_text(out / "report.html", html)
    return out / "report.md", out / "report.html"
