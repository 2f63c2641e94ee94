"""Figures and the sweep report (markdown + one self-contained HTML page). Reads tables, never
computes metrics.

Written for the biologist who receives the report by e-mail: failures first and in plain words,
the recommendation in one sentence, tables with human headers and units, every abbreviation in a
glossary, and figures embedded in `report.html` as data URIs so the page needs no other file.
Figures follow the paper's Fig. 3/4: IoU per factor as box plots placed at the factor's pixel
size (µm when known, the share of an object's diameter per pixel otherwise), the theoretical
throughput kept secondary, and per factor the same field as image, ground truth and prediction.
"""

from __future__ import annotations

import base64
import html as html_lib
import math
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from rescale4dl_bmz.files.atomic import atomic_path
from rescale4dl_bmz.files.text_files import write_text
from rescale4dl_bmz.errors import STAGE_WORDS

CHOSEN, OTHER, FAILED = "#e76f51", "#219ebc", "#c1121f"
SEMANTIC_CLASSES = (("background", (0.0, 0.0, 0.0)), ("cell interior", (0.2, 0.6, 1.0)),
                    ("cell edge", (1.0, 0.8, 0.1)))

# Which grid to trust, said once (the report and the figure captions refer to it).
GRID_NOTE = ("**Which numbers to trust: the native grid.** Each factor's prediction is brought back to the "
             "original pixels and compared with the original annotation, so every factor is judged against the "
             "same ground truth. The sampled grid compares each factor with its own rescaled annotation, as the "
             "ReScale4DL paper did; that annotation has already lost what the coarse pixels cannot show (thin "
             "edges, small cells), so the sampled grid flatters coarse factors. It is shown only for comparison "
             "with the paper.")

GLOSSARY = {
    "factor": "How much the pixel size is changed. ds2, ds4, ds8 … (downsampled): pixels 2, 4, 8 … times "
              "coarser than the original; up2, up4 (upsampled): 2, 4 times finer; og: the original pixel size.",
    "pixel size": "The side of one pixel in the sample, in micrometres (µm). The recommended pixel size is the "
                  "one to set on the microscope (objective, camera binning) for new acquisitions.",
    "IoU": "Intersection over union: the overlap of predicted and annotated cells, from 0 (none) to 1 (perfect). "
           "Mean IoU is its mean over the test images.",
    "95 % CI": "95 % confidence interval of the mean IoU (bootstrap over test images): the range where the true "
               "mean lies with 95 % confidence. With one test image it collapses to a single value.",
    "p vs best": "p-value of the paired test of this factor against the best factor on the same images. "
                 "Below 0.05: significantly worse than the best. Empty when the images are too few to test.",
    "native grid": "Predictions brought back to the original pixels and compared with the original annotation "
                   "(the fair comparison between factors).",
    "sampled grid": "Predictions compared with the annotation rescaled to the same factor (as in the paper).",
    "% of diameter per pixel": "How much of a typical cell's diameter one pixel covers, in percent. 10 % means "
                               "a cell is about 10 pixels wide.",
    "object diameter": "Mean width of the annotated cells, in pixels at that factor (a rod's thickness, a round "
                       "cell's diameter).",
    "throughput": "Theoretical number of cells imaged per second: cells that fit in one camera field at that "
                  "pixel size, divided by the time to acquire one field.",
    "storage per cell": "Bytes of raw image per annotated cell at that pixel size.",
    "training steps": "Number of optimiser updates during training; an epoch is one pass over the training "
                      "patches, split into training and validation patches.",
    "receptive field (RF)": "The window of pixels the network looks at to classify one pixel. Cells much wider "
                            "than the receptive field lack context; cells only a few pixels wide lose their shape. "
                            "RF/diameter compares the two.",
    "pruned": "A factor skipped before training because its cells would be too small or too large for the "
              "network (see `rescale4dl advise`).",
    "failed": "A factor whose rescaling, training, prediction or evaluation stopped with an error; it is shown "
              "in the figures but has no results.",
    "coarsest-equivalent": "The default rule: recommend the coarsest pixel size whose mean IoU is not "
                           "significantly worse than the best one (coarser pixels: more cells per field, less "
                           "storage, faster analysis).",
    "vanished objects": "Annotated cells that disappear when the mask is downsampled (smaller than a pixel).",
}

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


# ----------------------------------------------------------------------------- text

def failure_records(failed: Mapping | None) -> list[dict]:
    """Failures as {factor, stage, cause, log}: accepts {factor: {"stage", "cause", "log"}} and the older
    {factor: "stage: Type: message"} (the cause is then the message's last exception line)."""
    out = []
    for factor, rec in (failed or {}).items():
        if isinstance(rec, Mapping):
            stage, cause, log = rec.get("stage"), rec.get("cause") or rec.get("error"), rec.get("log")
        else:
            text = str(rec)
            stage, _, rest = text.partition(": ")
            if not rest:
                stage, rest = None, text
            cause, log = _last_cause(rest), None
        out.append({"factor": str(factor), "stage": stage, "cause": _one_line(cause), "log": log})
    return out


def _last_cause(text: str) -> str:
    """The most telling line of an error text: the last `SomethingError: message` line, else the first."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return "unknown error"
    hits = [ln for ln in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b:?", ln)]
    return hits[-1] if hits else lines[0]


def _one_line(cause) -> str:
    text = " ".join(str(cause or "unknown error").split())
    text = re.sub(r"^[A-Za-z_][\w.]*(Error|Exception): ", "", text)  # the type name says nothing to a user
    return text if len(text) <= 300 else text[:297] + "..."


def failure_sentence(rec: dict, markdown: bool = False) -> str:
    """'ds8 failed during training: <cause>. Full log: <path>.'"""
    code = (lambda s: f"`{s}`") if markdown else (lambda s: s)
    factor = f"**{rec['factor']}**" if markdown else rec["factor"]
    stage = STAGE_WORDS.get(str(rec.get("stage")), rec.get("stage") or "an unknown stage")
    text = f"{factor} failed during {stage}: {rec['cause'].rstrip('.')}."
    if rec.get("log"):
        text += f" Full log: {code(rec['log'])}."
    return text


def gains_lines(selection) -> list[str]:
    """The chosen factor's gains against the baseline factor the selection names (og by default)."""
    base = getattr(selection, "baseline", None) or "og"
    labels = {"objects_per_fov": ("cells per field of view", "more"), "storage_per_object": ("storage per cell", ""),
              "inference_speed": ("prediction speed", "faster")}
    out = []
    for key, value in (getattr(selection, "gains", None) or {}).items():
        if not isinstance(value, Mapping) or value.get("ratio") is None:
            continue
        label, word = labels.get(key, (key.replace("_", " "), ""))
        r = float(value["ratio"])
        if key == "storage_per_object":
            amount = f"{1 / r:.3g}x less" if 0 < r < 1 else f"{r:.3g}x"
        else:
            amount = f"{r:.3g}x {word}".strip() if r >= 1 else f"{1 / r:.3g}x fewer" if r > 0 else f"{r:.3g}x"
        basis = f"; {value['basis']}" if value.get("basis") else ""
        out.append(f"{label}: {amount} than at {base}{basis}")
    return out


def recommendation_sentence(selection, original_um: float | None) -> str:
    """One sentence: what to acquire at, in µm when the original pixel size is known."""
    scale = float(getattr(selection, "scale", 1.0))
    if scale > 1:
        rel = f"{scale:g}x coarser than"
    elif scale < 1:
        rel = f"{1 / scale:g}x finer than"
    else:
        rel = "the same as"
    if not original_um:
        what = f"pixels **{rel} the original ones**" if scale != 1 else "**the original pixel size**"
        return (f"Acquire your images with {what} (factor {selection.factor}). The original pixel size is unknown; "
                "give it (--pixel-size) to get the answer in µm.")
    return (f"Acquire your images at **{selection.pixel_size_text} per pixel** (factor {selection.factor}: {rel} "
            f"the original pixel size, {original_um:.4g} µm).")


def glossary_markdown(terms: Sequence[str] | None = None) -> str:
    keys = list(GLOSSARY) if terms is None else [t for t in terms if t in GLOSSARY]
    return "\n".join(f"- **{k}**: {GLOSSARY[k]}" for k in keys)


# ----------------------------------------------------------------------------- tables

def _fmt(value, kind: str, row: Mapping | None = None) -> str:
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
        return _sig(v, 3)
    if kind == "fixed1":
        return f"{v:.1f}"
    if kind == "int":
        return f"{int(round(v)):,}"
    if kind == "count":
        return _sig(v, 3) if v < 100 else f"{round(v):,.0f}"
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
    return _sig(v, 3)


def _sig(v: float, digits: int) -> str:
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


# ----------------------------------------------------------------------------- figures

def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    _pyplot().close(fig)
    return path


def _order(df: pd.DataFrame) -> list[str]:
    return list(df.sort_values("scale")["factor"].drop_duplicates())


def _scale_of(name: str) -> float:
    from rescale4dl_bmz.factors import parse_factor

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
            bar, label = um / pixel_size_um, f"{_sig(um, 2)} µm"
        else:
            bar = _nice_length(span)
            label = f"{_sig(bar, 2)} px (original)"
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


# ----------------------------------------------------------------------------- the page

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;max-width:60rem;margin:2em auto;
padding:0 1em;line-height:1.45;color:#1d2530}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;border-bottom:1px solid #dde;padding-bottom:.2em;
margin-top:1.8em}
table{border-collapse:collapse;font-size:13px;display:block;overflow-x:auto;max-width:100%;margin:.6em 0}
td,th{border:1px solid #ccd;padding:4px 8px;white-space:nowrap;text-align:right}
th{background:#f2f4f8;text-align:center}td:first-child,th:first-child{text-align:left}
img{max-width:100%;height:auto;display:block;margin:.6em 0}
code{background:#f2f4f8;padding:0 .25em;border-radius:3px;font-size:.92em;word-break:break-all}
.failures{border:2px solid #c1121f;background:#fff3f3;padding:.2em 1em;border-radius:6px}
.failures h2{color:#c1121f;border:none}
.lead{font-size:1.15em;background:#eef7ee;border-left:5px solid #2a9d8f;padding:.6em 1em}
"""


def embed_images(html: str, base: Path) -> str:
    """Replace every `src="relative/file.png"` by a base64 data URI of that file (self-contained page)."""
    def repl(m: re.Match) -> str:
        src = html_lib.unescape(m.group(2))
        if re.match(r"^(data:|https?:)", src):
            return m.group(0)
        data = base64.b64encode((base / src).read_bytes()).decode("ascii")
        mime = "image/svg+xml" if src.endswith(".svg") else "image/jpeg" if src.endswith((".jpg", ".jpeg")) \
            else "image/png"
        return f'{m.group(1)}"data:{mime};base64,{data}"'

    return re.sub(r'(<img[^>]*?\ssrc=)"([^"]+)"', repl, html)


def image_data_uri(path: str | Path) -> str:
    """A PNG file as a data URI (for Prefect artifacts, which cannot reach local files)."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def markdown_to_html(md: str) -> str:
    try:
        import markdown

        return markdown.markdown(md, extensions=["tables", "md_in_html"])
    except ImportError:  # pragma: no cover - markdown ships with tensorboard
        return "<pre>" + html_lib.escape(md) + "</pre>"


def write_report(out: str | Path, sections: Sequence[tuple[str, str]], title: str = "rescale4dl sweep report",
                 lead: str = "") -> tuple[Path, Path]:
    """Write `report.md` (figures linked) and a self-contained `report.html` (figures embedded) from
    (heading, markdown body) sections. A heading starting with '!' marks a warning box (failures)."""
    out = Path(out)
    parts, html_parts = [f"# {title}\n"], [f"<h1>{html_lib.escape(title)}</h1>"]
    if lead:
        parts.append(lead + "\n")
        html_parts.append(f"<div class='lead'>{markdown_to_html(lead)}</div>")
    for heading, body in sections:
        warn = heading.startswith("!")
        heading = heading.lstrip("!")
        parts.append(f"## {heading}\n\n{body}\n")
        block = f"<h2>{html_lib.escape(heading)}</h2>\n{markdown_to_html(body)}"
        html_parts.append(f"<div class='failures'>{block}</div>" if warn else block)
    md = "\n".join(parts)
    write_text(out / "report.md", md)
    page = ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html_lib.escape(title)}</title><style>{CSS}</style></head><body>"
            + embed_images("\n".join(html_parts), out) + "</body></html>\n")
    write_text(out / "report.html", page)
    return out / "report.md", out / "report.html"
