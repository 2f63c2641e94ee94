"""Human-facing parts of a package: the sweep table, the documentation (README.md) and the cover."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from ..factors import parse_factor

SWEEP_COLUMNS = ("factor", "scale", "pixel_size_um", "grid", "n_images", "iou_mean", "iou_ci_low", "iou_ci_high",
                 "mean_diameter_px", "pct_diameter_per_pixel", "throughput", "bytes_per_object", "status")

CITATIONS = {
    "rescale4dl": ("Ferreira, Saraiva, ..., Henriques, Gómez-de-Mariscal. ReScale4DL (preprint). bioRxiv (2025)",
                   "10.1101/2025.04.09.647871"),
    "unet": ("Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical Image Segmentation. "
             "MICCAI (2015)", "10.1007/978-3-319-24574-4_28"),
    "stardist": ("Schmidt, Weigert, Broaddus, Myers. Cell Detection with Star-Convex Polygons. MICCAI (2018)",
                 "10.1007/978-3-030-00934-2_30"),
    "zerocostdl4mic": ("von Chamier et al. Democratising deep learning for microscopy with ZeroCostDL4Mic. "
                       "Nature Communications 12, 2276 (2021)", "10.1038/s41467-021-22518-0"),
}


def citations_for(task: str) -> list[tuple[str, str]]:
    keys = ["rescale4dl", "stardist", "unet"] if task == "instance" else ["rescale4dl", "unet", "zerocostdl4mic"]
    return [CITATIONS[k] for k in keys]


def _clean(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if v is None:
        return None
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return v


def sweep_table(summary: pd.DataFrame, original_pixel_size_um: float | None) -> list[dict]:
    """The sweep's summary as plain rows (factor, pixel size, IoU with CI, throughput, ...), finest first."""
    rows = []
    for rec in summary.to_dict(orient="records"):
        f = parse_factor(str(rec["factor"]))
        row = {k: _clean(rec.get(k)) for k in SWEEP_COLUMNS if k in rec}
        row["factor"], row["scale"] = f.name, f.scale
        if row.get("pixel_size_um") is None:
            row["pixel_size_um"] = f.pixel_size(original_pixel_size_um)
        rows.append(row)
    return sorted(rows, key=lambda r: (r["scale"], str(r.get("grid", ""))))


def _fmt(v, spec: str = ".3f") -> str:
    return "" if v is None else format(v, spec) if isinstance(v, (int, float)) else str(v)


def sweep_markdown(rows: list[dict], chosen: str) -> str:
    heads = ["factor", "pixel size (µm)", "grid", "images", "mean IoU", "95% CI", "throughput", "status"]
    out = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in rows:
        ci = ""
        if r.get("iou_ci_low") is not None and r.get("iou_ci_high") is not None:
            ci = f"{r['iou_ci_low']:.3f}–{r['iou_ci_high']:.3f}"
        name = f"**{r['factor']}** (chosen)" if r["factor"] == chosen else r["factor"]
        out.append("| " + " | ".join([name, _fmt(r.get("pixel_size_um"), ".4g"), _fmt(r.get("grid")),
                                      _fmt(r.get("n_images"), ".0f"),
                                      _fmt(r.get("iou_mean")), ci, _fmt(r.get("throughput"), ".4g"),
                                      _fmt(r.get("status"))]) + " |")
    return "\n".join(out)


def documentation(*, name: str, task: str, factor: str, scale: float, pixel_size_um: float | None,
                  original_pixel_size_um: float | None, variant: str, reason: str, criterion: str,
                  recommended_factor: str, rows: list[dict], network, dataset: str | None,
                  test_shape: tuple[int, int]) -> str:
    """README.md of the package."""
    px = f"{pixel_size_um:.4g} µm" if pixel_size_um is not None else f"{scale:g}x the original pixel size"
    orig = f"{original_pixel_size_um:.4g} µm" if original_pixel_size_um is not None else "unknown"
    what = ("instance labels (one integer per object) through StarDist's post-processing"
            if task == "instance" else
            "per-pixel probabilities of " + ", ".join(network.channel_names))
    step = parse_factor(factor)
    if step.is_down:
        how_fiji = (f"downsample by {step.step} with averaging (Image > Transform > Bin..., {step.step}x{step.step}, "
                    "average), or Image > Scale... with averaging")
    elif step.is_up:
        how_fiji = f"upsample by {step.step} with bicubic interpolation (Image > Scale..., x{step.step})"
    else:
        how_fiji = "nothing to do: the model works at the original sampling"
    axes_note = (
        f"The input and output space axes carry `scale` = {pixel_size_um} and `unit` = micrometer."
        if variant == "bioimageio" and pixel_size_um is not None else
        "The space axes carry unit scales (1 pixel), because deepImageJ sizes output tiles as input tile x "
        f"output axis scale; the model's pixel size ({px}) is recorded in `config.deepimagej.test_information` "
        "and `config.rescale4dl.pixel_size_um`." if variant == "deepimagej" else
        "The original pixel size is unknown, so the space axes carry unit scales.")
    sel = (f"The sweep recommends **{recommended_factor}** (criterion `{criterion}`). {reason}"
           if recommended_factor == factor else
           f"This package holds factor {factor}, chosen by hand; the sweep recommends {recommended_factor} "
           f"(criterion `{criterion}`). {reason}")
    refs = "\n".join(f"- {text}. doi:{doi}" for text, doi in citations_for(task))
    return f"""# {name}

A 2D {network.architecture} ({'instance' if task == 'instance' else 'semantic'} segmentation) trained with
ReScale4DL-BMZ at the pixel size where segmentation of this data worked best.
It outputs {what}.

## Recommended acquisition pixel size

**{px}** (factor `{factor}`, scale {scale:g} x the original {orig}{f' of {dataset}' if dataset else ''}).
The model was trained and validated at this sampling: acquire at it, or bring images to it before
prediction. {axes_note}

{sel}

## How to bring images to this pixel size

- At the microscope: choose objective, camera binning or zoom so one pixel is {px}.
- In Fiji: {how_fiji}. From any other pixel size, scale by (your pixel size) / ({px}), or use
  the ReScale4DL macro `fiji_macros/resample_to_model_pixel_size.ijm` to resample to this pixel size.
- In Python: `rescale4dl rescale` with factor `{factor}`, or block-average (downsampling) /
  Catmull-Rom (upsampling) by the same ratio.

## Inputs and outputs

- Input `input`: one 2D single-channel image (batch, y, x, channel), any size multiple of
  {network.divisor} px; preprocessing: per-image percentile normalisation
  ({network.low_percentile:g}, {network.high_percentile:g}) — the same as in training.
- Output: {what}.
- Test tensors: a {test_shape[0]} x {test_shape[1]} px crop of a sweep image at this sampling.

## Validation

Mean IoU per factor of the ReScale4DL sweep (95% bootstrap confidence intervals; "native": predictions
compared with the ground truth at the original sampling; "sampled": at the factor's own sampling):

{sweep_markdown(rows, factor)}

## Training

{_training_text(network)}

## References

{refs}
"""


def _training_text(network) -> str:
    c = network.config
    keys = [("epochs", "epochs"), ("steps", "steps"), ("batch_size", "batch size"), ("learning_rate", "learning rate"),
            ("patch_size", "patch size (px)"), ("seed", "seed"), ("pixel_size_um", "pixel size (µm)")]
    parts = [f"{label}: {c[k]}" for k, label in keys if c.get(k) is not None]
    arch = c.get("architecture") or {}
    if arch:
        parts.append("architecture: " + ", ".join(f"{k}={v}" for k, v in arch.items()))
    if network.receptive_field_px:
        parts.append(f"receptive field: {network.receptive_field_px:g} px")
    if network.stardist:
        s = network.stardist
        parts.append(f"StarDist thresholds: probability {s['prob_threshold']:.3g}, NMS {s['nms_threshold']:.3g}")
    return "\n".join(f"- {p}" for p in parts) or "- see config.rescale4dl"


def write_cover(out: Path, figure: Path | None, test_input: np.ndarray, test_output: np.ndarray, task: str) -> Path:
    """The sweep figure when there is one, else input | output of the test tensors (2:1)."""
    if figure is not None:
        target = out.with_suffix(figure.suffix.lower())
        shutil.copyfile(figure, target)
        return target
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3), dpi=100)
    FigureCanvasAgg(fig)
    img = test_input[0, ..., 0]
    res = test_output[0, ..., 0] if task == "instance" else test_output[0].argmax(-1)
    for i, (arr, kw) in enumerate([(img, {"cmap": "gray"}), (res, {"cmap": "nipy_spectral" if task == "instance" else "viridis",
                                                                   "interpolation": "nearest"})]):
        ax = fig.add_axes((i * 0.5, 0, 0.5, 1))
        ax.imshow(arr, **kw)
        ax.set_axis_off()
    fig.savefig(out.with_suffix(".png"))
    return out.with_suffix(".png")
