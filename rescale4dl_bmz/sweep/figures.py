"""The sweep's figures, drawn with matplotlib from tables and arrays (no metric is computed here).

They follow the paper's Fig. 3/4: IoU per factor as box plots placed at the factor's pixel size
(µm when known, the share of an object's diameter per pixel otherwise), the theoretical throughput
kept secondary, and per factor the same field as image, ground truth and prediction.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from rescale4dl_bmz.factors import parse_factor
from rescale4dl_bmz.files.atomic import atomic_path
from rescale4dl_bmz.sweep.report_tables import significant

CHOSEN, OTHER, FAILED = "#e76f51", "#219ebc", "#c1121f"
SEMANTIC_CLASSES = (("background", (0.0, 0.0, 0.0)), ("cell interior", (0.2, 0.6, 1.0)),
                    ("cell edge", (1.0, 0.8, 0.1)))


def _pyplot():
    """pyplot on the Agg backend (headless), imported only when a figure is drawn."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Write the figure atomically and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    _pyplot().close(fig)
    return path


def _order(df: pd.DataFrame) -> list[str]:
    return list(df.sort_values("scale")["factor"].drop_duplicates())


def _scale_of(name: str) -> float:
    return parse_factor(name).scale


def plot_iou_vs_coverage(per_image: pd.DataFrame, summary: pd.DataFrame, path: str | Path,
                         grid: str = "native", chosen: str | None = None, title: str = "",
                         pixel_size_um: float | None = None, failed: Sequence[str] = ()) -> Path:
    """IoU box plots per factor on a log x axis: µm per pixel when the original pixel size is known
    (with the % of object diameter per pixel as a second axis on top), else the diameter share.
    The theoretical throughput is a faint secondary curve; failed factors are marked with an x."""
    plt = _pyplot()
    from matplotlib.ticker import NullFormatter, NullLocator

    path = Path(path)
    pi = per_image[per_image["grid"] == grid] if "grid" in per_image else per_image
    sm = summary[summary["grid"] == grid] if "grid" in summary else summary
    pct_col = next((c for c in sm.columns if c.startswith("pct_diameter")), None)
    sm = sm.dropna(subset=[pct_col] if pct_col else []).copy()
    sm["scale"] = [_scale_of(f) for f in sm["factor"]]
    sm = sm.sort_values("scale")
    use_um = bool(pixel_size_um)
    # one x per scale: µm, else % of diameter per pixel (proportional to the scale)
    ref = sm.iloc[0] if not sm.empty and pct_col else None
    pct_per_scale = float(ref[pct_col]) / float(ref["scale"]) if ref is not None else None

    def x_of(scale: float) -> float | None:
        if use_um:
            return pixel_size_um * scale
        return pct_per_scale * scale if pct_per_scale else None

    fig, ax = plt.subplots(figsize=(8, 4.6))
    xs, data, labels = [], [], []
    for _, row in sm.iterrows():
        vals = pi.loc[pi["factor"] == row["factor"], "iou"].dropna().to_numpy()
        if vals.size:
            xs.append(x_of(row["scale"]))
            data.append(vals)
            labels.append(row["factor"])
    fails = [(f, x_of(_scale_of(f))) for f in failed if x_of(_scale_of(f)) is not None]
    ticks = sorted([(x, n) for x, n in zip(xs, labels)] + [(x, f) for f, x in fails])
    if ticks:
        allx = [x for x, _ in ticks]
        ax.set_xscale("log")
        ax.set_xlim(min(allx) / 1.6, max(allx) * 1.6)
    if data:
        widths = [x * 0.22 for x in xs]  # equal width on the log axis
        bp = ax.boxplot(data, positions=xs, widths=widths, patch_artist=True, manage_ticks=False, zorder=3,
                        medianprops={"color": "black"})
        for patch, name in zip(bp["boxes"], labels):
            patch.set_facecolor(CHOSEN if name == chosen else OTHER)
            patch.set_alpha(0.55)
        for x, vals, name in zip(xs, data, labels):  # every image's IoU on top of its box
            ax.plot(np.full(len(vals), x), vals, "o", ms=4, alpha=0.9, zorder=4,
                    color=CHOSEN if name == chosen else "#023047")
    for name, x in fails:
        ax.plot([x], [0.04], marker="x", ms=12, mew=3, color=FAILED, zorder=5, clip_on=False)
        ax.annotate("failed", (x, 0.09), ha="center", fontsize=8, color=FAILED, fontweight="bold")
    if ticks:
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks([x for x, _ in ticks])
        ax.set_xticklabels([f"{x:.3g}\n{n}" + ("\n(chosen)" if n == chosen else "") for x, n in ticks],
                           fontsize=8)
    ax.set_xlabel("pixel size (µm per pixel) and factor" if use_um
                  else "% of the object size per pixel, and factor (the original pixel size is unknown)")
    ax.set_ylabel(f"IoU per test image ({grid} grid)")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    if use_um and pct_per_scale:
        k = pct_per_scale / pixel_size_um  # % of diameter per µm of pixel
        top = ax.secondary_xaxis("top", functions=(lambda x: x * k, lambda p: p / k))
        top.set_xlabel("% of the object size per pixel", fontsize=9)
        top.set_xticks([x * k for x, _ in ticks])
        top.set_xticklabels([f"{x * k:.3g}" for x, _ in ticks], fontsize=8)
        top.xaxis.set_minor_locator(NullLocator())
    thr = sm.dropna(subset=["throughput"]) if "throughput" in sm else sm.iloc[0:0]
    handles = [plt.Line2D([], [], color=OTHER, marker="s", ls="", ms=9, alpha=0.6, label="IoU (box: quartiles)"),
               plt.Line2D([], [], color=CHOSEN, marker="s", ls="", ms=9, alpha=0.6, label="recommended")]
    if fails:
        handles.append(plt.Line2D([], [], color=FAILED, marker="x", ls="", ms=9, mew=2.5, label="failed factor"))
    if not thr.empty:
        ax2 = ax.twinx()
        ax2.plot([x_of(s) for s in thr["scale"]], thr["throughput"], ":", color="grey", lw=1.2, alpha=0.7,
                 zorder=1)
        ax2.set_yscale("log")
        ax2.set_ylabel("throughput, theoretical (cells / s)", color="grey", fontsize=8)
        ax2.tick_params(axis="y", which="both", colors="grey", labelsize=7)
        ax.set_zorder(ax2.get_zorder() + 1)
        ax.patch.set_visible(False)
        handles.append(plt.Line2D([], [], color="grey", ls=":", label="throughput (right axis)"))
    ax.legend(handles=handles, fontsize=7, loc="upper right", framealpha=0.85)
    ax.set_title(title or "Segmentation quality against pixel size", pad=30 if use_um else 8, fontsize=11)
    return _save(fig, path)


def plot_diameter_distributions(per_object: pd.DataFrame, path: str | Path, gt_col: str, pred_col: str,
                                grid: str = "native") -> Path:
    """Ground truth vs predicted object diameters, one panel per factor."""
    plt = _pyplot()
    po = per_object[per_object["grid"] == grid] if "grid" in per_object else per_object
    factors = _order(po)
    n = max(len(factors), 1)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.7 * rows), squeeze=False)
    for i, (ax, name) in enumerate(zip(axes.flat, factors)):
        sub = po[po["factor"] == name]
        gt = sub[gt_col].dropna().to_numpy() if gt_col in sub else np.array([])
        pr = sub[pred_col].dropna().to_numpy() if pred_col in sub else np.array([])
        both = np.concatenate([gt, pr])
        bins = np.linspace(both.min(), both.max(), 25) if both.size and both.max() > both.min() else 10
        ax.hist(gt, bins=bins, alpha=0.6, label="annotation", color="#219ebc")
        ax.hist(pr, bins=bins, alpha=0.6, label="prediction", color="#fb8500")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("diameter (px, original pixels)" if grid == "native" else "diameter (px at this factor)",
                      fontsize=8)
        if i % cols == 0:
            ax.set_ylabel("number of cells", fontsize=8)
    for ax in list(axes.flat)[len(factors):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, Path(path))


def _nice_length(span: float) -> float:
    """A round scale-bar length near a fifth of `span` (1, 2 or 5 x 10^k)."""
    target = span / 5
    if target <= 0:
        return 1.0
    k = math.floor(math.log10(target))
    return min((m * 10 ** k for m in (1, 2, 5, 10)), key=lambda v: abs(v - target))


def plot_examples(examples: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]], path: str | Path,
                  pixel_size_um: float | None = None, task: str = "semantic") -> Path:
    """One row per factor of the same field: image, annotation, prediction over the image (Fig. 3a/c).

    Every row spans the same area of the sample (shown in original pixels), with a scale bar (µm
    when known, else original pixels) and a colour legend.
    """
    plt = _pyplot()
    from matplotlib.patches import Patch
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    n = max(len(examples), 1)
    fig, axes = plt.subplots(n, 3, figsize=(8.4, 2.7 * n + 0.5), squeeze=False)
    for i, (row, (name, image, gt, pred)) in enumerate(zip(axes, examples)):
        scale = _scale_of(name)
        h, w = image.shape[:2]
        extent = (0, w * scale, h * scale, 0)  # original pixels: every row covers the same field
        lo, hi = np.percentile(image, (1, 99.8))
        gray = dict(cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, extent=extent, interpolation="nearest")
        row[0].imshow(image, **gray)
        row[1].imshow(_colour(gt, task), extent=extent, interpolation="nearest")
        row[2].imshow(image, **gray)
        overlay = _colour(pred, task)
        alpha = (np.asarray(pred) > 0).astype(float) * 0.5
        row[2].imshow(np.dstack([overlay, alpha]), extent=extent, interpolation="nearest")
        px = f"{pixel_size_um * scale:.3g} µm pixels" if pixel_size_um else f"{scale:g}x original pixels"
        row[0].set_ylabel(f"{name}\n({px})", fontsize=9)
        span = w * scale
        if pixel_size_um:
            um = _nice_length(span * pixel_size_um)
            bar, label = um / pixel_size_um, f"{significant(um, 2)} µm"
        else:
            bar = _nice_length(span)
            label = f"{significant(bar, 2)} px (original)"
        for ax, t in zip(row, ("image", "annotation (ground truth)", "prediction over the image")):
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(t, fontsize=9)
            ax.add_artist(AnchoredSizeBar(ax.transData, bar, label, "lower right", pad=0.3, sep=2, color="white",
                                          frameon=False, size_vertical=max(span / 80, 0.5), fontproperties={"size": 7}))
    if task == "semantic":
        legend = [Patch(facecolor=c, edgecolor="grey", label=name) for name, c in SEMANTIC_CLASSES]
    else:
        legend = [Patch(facecolor=(0.4, 0.8, 0.5), edgecolor="grey", label="one colour per cell (instance)"),
                  Patch(facecolor="black", edgecolor="grey", label="background")]
    fig.legend(handles=legend, loc="lower center", ncol=len(legend), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.5 / (2.7 * n + 0.5), 1, 1))
    return _save(fig, Path(path))


def _colour(labels: np.ndarray, task: str = "semantic") -> np.ndarray:
    """Labels to RGB: semantic classes with the legend's colours, instances with a fixed palette."""
    labels = np.asarray(labels).astype(np.int64)
    top = int(labels.max()) if labels.size else 0
    if task == "semantic" and top <= 2:
        return np.array([c for _, c in SEMANTIC_CLASSES])[labels]
    palette = np.random.default_rng(7).uniform(0.25, 1.0, size=(top + 1, 3))
    palette[0] = 0
    return palette[labels]

