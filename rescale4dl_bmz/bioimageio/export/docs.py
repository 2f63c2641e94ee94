"""Human-facing text of a package: the sweep table, the citations and the documentation (README.md)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rescale4dl_bmz.factors import parse_factor
from rescale4dl_bmz.bioimageio.export.weights import ONNX_OPSET

SWEEP_COLUMNS = ("factor", "scale", "pixel_size_um", "grid", "n_images", "iou_mean", "iou_ci_low", "iou_ci_high",
                 "mean_diameter_px", "pct_diameter_per_pixel", "throughput", "bytes_per_object", "status")

CITATIONS = {
    "rescale4dl": ("Mariana G. Ferreira, Bruno M. Saraiva, António D. Brito, Mariana G. Pinho, Ricardo Henriques, "
                   "Estibaliz Gómez-de-Mariscal. ReScale4DL: Balancing Pixel and Contextual Information for Enhanced "
                   "Bioimage Segmentation. bioRxiv (2025), preprint", "10.1101/2025.04.09.647871"),
    "unet": ("Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical Image Segmentation. "
             "MICCAI (2015)", "10.1007/978-3-319-24574-4_28"),
    "stardist": ("Schmidt, Weigert, Broaddus, Myers. Cell Detection with Star-Convex Polygons. MICCAI (2018)",
                 "10.1007/978-3-030-00934-2_30"),
    "zerocostdl4mic": ("von Chamier et al. Democratising deep learning for microscopy with ZeroCostDL4Mic. "
                       "Nature Communications 12, 2276 (2021)", "10.1038/s41467-021-22518-0"),
}


def citations_for(task: str, data: tuple[str, str | None] | None = None) -> list[tuple[str, str | None]]:
    """(text, doi) of ReScale4DL, the network, and the training data when its citation is known."""
    keys = ["rescale4dl", "stardist", "unet"] if task == "instance" else ["rescale4dl", "unet", "zerocostdl4mic"]
    return [CITATIONS[k] for k in keys] + ([data] if data else [])


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


FIND_PIXEL_SIZE = """The original pixel size of the training data was not given, so this package states the model's
sampling only relative to it ({rel}); it makes no claim about a physical pixel size. To find yours:
in Fiji, *Image › Properties…* shows the calibration the microscope software stored (check it is not
1 pixel); otherwise pixel size = camera pixel pitch × binning / total magnification (e.g. 6.5 µm ×
1 / 60 = 0.108 µm), or use the value in the file's OME/vendor metadata. Then export again with
`rescale4dl export RUN_DIR --pixel-size UM --out model.zip` so the package carries it on its axes."""


def postprocessing_text(task: str, network, macro: str | None) -> str:
    """How a Fiji user turns the output into labels."""
    if task == "instance":
        s = network.stardist or {}
        return (f"The network outputs {1 + int(s.get('n_rays', 0))} channels: object probability, then "
                f"{s.get('n_rays')} ray distances (grid {tuple(s.get('grid', ()))}). bioimageio.core applies the "
                "spec's `stardist_postprocessing` (non-maximum suppression, probability threshold "
                f"{s.get('prob_threshold', 0):.3g}, NMS threshold {s.get('nms_threshold', 0):.3g}) and returns "
                "instance labels.\n\nIn Fiji: deepImageJ (through JDLL) runs the network and returns the "
                "probability/distance channels; turn them into labels with the StarDist Fiji plugin (update site "
                "*StarDist*): *Plugins › StarDist › Other › StarDist 2D NMS (postprocessing only)* with the "
                "probability channel, the distance channels and the thresholds above (deepImageJ versions that "
                "know the spec's `stardist_postprocessing` apply it themselves). Not verified in Fiji here.")
    return (f"The network outputs softmax probabilities of {', '.join(network.channel_names)}. The attached "
            f"ImageJ macro `{macro}` (declared in `config.deepimagej.prediction.postprocess`, as deepImageJ "
            "runs post-processing macros) turns them into an instance label image with the same rule as "
            "ReScale4DL's Python `semantic_to_instances`: argmax, inner class, fill holes, distance-map seeds "
            "(maxima rising 2 px above their saddle), watershed, grown back over inner ∪ edge, objects under "
            "10 px dropped. It runs on plain ImageJ 1.x (no plugins). Run it on the output image "
            "(*Plugins › Macros › Run…*) if your deepImageJ does not run it for you.")


def training_data_text(data: dict | None) -> str:
    if not data:
        return "- not recorded"
    return "\n".join(f"- {line}" for line in data.get("lines", [])) or "- not recorded"


def documentation(*, name: str, task: str, factor: str, scale: float, pixel_size_um: float | None,
                  original_pixel_size_um: float | None, variant: str, reason: str, criterion: str,
                  recommended_factor: str, rows: list[dict], network, dataset: str | None,
                  test_shape: tuple[int, int], training_data: dict | None = None, macro: str | None = None,
                  meta=None, tf_version: str = "2.x") -> str:
    """README.md of the package (no physical pixel size is claimed when it is unknown)."""
    known = pixel_size_um is not None
    rel = f"{scale:g}x the original pixel size" if scale != 1 else "the original pixel size"
    px = f"{pixel_size_um:.4g} µm" if known else rel
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
    if variant == "deepimagej":
        axes_note = ("This is the deepImageJ tiling variant of the main package: its space axes carry unit scales "
                     "(1 pixel), because some deepImageJ/JDLL versions size an output tile as input tile x output "
                     f"axis scale; the model's pixel size ({px}) is recorded in "
                     "`config.deepimagej.test_information` and `config.rescale4dl.pixel_size_um`. Prefer the main "
                     "package, whose axes carry the pixel size.")
    elif known:
        axes_note = (f"The input and output space axes carry `scale` = {pixel_size_um:.6g} and `unit` = micrometer "
                     "(also for deepImageJ).")
    else:
        axes_note = FIND_PIXEL_SIZE.format(rel=rel)
    sel = (f"The sweep recommends **{recommended_factor}** (criterion `{criterion}`). {reason}"
           if recommended_factor == factor else
           f"This package holds factor {factor}, chosen by hand; the sweep recommends {recommended_factor} "
           f"(criterion `{criterion}`). {reason}")
    data_cite = None
    if meta is not None and meta.data_doi:
        data_cite = (meta.data_citation or meta.data_name or "training data", meta.data_doi)
    refs = "\n".join(f"- {text}." + (f" doi:{doi}" if doi else "") for text, doi in citations_for(task, data_cite))
    if meta is not None and meta.data_citation and not meta.data_doi:
        refs += f"\n- {meta.data_citation}"
    origin = f"original pixel size {original_pixel_size_um:.4g} µm" if original_pixel_size_um is not None else \
        "original pixel size not given"
    heading = "Recommended acquisition pixel size" if known else "Recommended sampling"
    tiling_note = ("\n\nJDLL's tiling code (as read in its source) sizes an output tile as input tile x output axis "
                   "`scale`, the older spec's meaning; with the pixel size on the axes a deepImageJ built on it may "
                   "mis-size output tiles. If deepImageJ reports a tile or shape error, export the unit-scale "
                   "fallback: `rescale4dl export RUN_DIR --variant deepimagej --out model_deepimagej.zip`."
                   if known and variant == "bioimageio" else "")
    return f"""# {name}

A 2D {network.architecture} ({'instance' if task == 'instance' else 'semantic'} segmentation) trained with
ReScale4DL-BMZ at the sampling where segmentation of this data worked best.
It outputs {what}.

## {heading}

**{px}** (factor `{factor}`, scale {scale:g}; {origin}{f', data {dataset}' if dataset else ''}).
The model was trained and validated at this sampling: acquire at it, or bring images to it before
prediction.

{axes_note}

{sel}

## How to bring images to this sampling

- At the microscope: choose objective, camera binning or zoom so one pixel is {px}.
- In Fiji: {how_fiji}. From any other pixel size, scale by (your pixel size) / (the model's), or use
  the ReScale4DL macro `fiji_macros/resample_to_model_pixel_size.ijm`.
- In Python: `rescale4dl rescale` with factor `{factor}`, or block-average (downsampling) /
  Catmull-Rom (upsampling) by the same ratio.

## Inputs and outputs

- Input `input`: one 2D single-channel image (batch, y, x, channel), any size multiple of
  {network.divisor} px; preprocessing: per-image percentile normalisation
  ({network.low_percentile:g}, {network.high_percentile:g}) — the same as in training.
- Output: {what}.
- Test tensors: a {test_shape[0]} x {test_shape[1]} px crop of a sweep image at this sampling;
  `sample_input.tif` / `sample_output.tif` are the same crop as ImageJ TIFFs (channels as a stack,
  calibration set when the pixel size is known).
- Weights: Keras 3 (`model.keras`, `model.h5`), a TensorFlow SavedModel and ONNX (opset
  {ONNX_OPSET}), all checked by bioimageio.core against the test tensors.

## Post-processing (labels in Fiji)

{postprocessing_text(task, network, macro)}

## Validation

Mean IoU per factor of the ReScale4DL sweep (95% bootstrap confidence intervals; "native": predictions
compared with the ground truth at the original sampling; "sampled": at the factor's own sampling):

{sweep_markdown(rows, factor)}

## Training data

{training_data_text(training_data)}

## Training

{_training_text(network)}

## Running it in deepImageJ

deepImageJ runs models through JDLL. JDLL's engine list (`supportedVersions.json`) stops at
TensorFlow 2.11 while this SavedModel was written by TensorFlow {tf_version}; its ONNX engines cover
opsets 6-18. Use the ONNX weights in deepImageJ. Verified here: bioimageio.core runs every weight
format on the test tensors; the SavedModel opens with a TF1-style session loader; the ONNX model
runs in onnxruntime. Not verified: a run inside Fiji/deepImageJ.{tiling_note}

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
