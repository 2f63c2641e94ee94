"""The sweep report's text, written for the biologist who receives it by e-mail: failures first
and in plain words, the recommendation in one sentence, tables with human headers and units, and
every abbreviation in a glossary. Reads tables, never computes metrics; figures are drawn in
`figures`, the page is rendered by `report_page`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from rescale4dl_bmz.errors import STAGE_WORDS
from rescale4dl_bmz.factors import parse_factor
from rescale4dl_bmz.sweep.config import SweepConfig
from rescale4dl_bmz.sweep.plan import Plan
from rescale4dl_bmz.sweep.report_page import write_report
from rescale4dl_bmz.sweep.report_tables import COST_COLUMNS, QUALITY_COLUMNS, human_table, markdown_table

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
    "stopped": "A factor whose training successive halving stopped early (`schedule: halving`): its validation "
               "score trailed the round's best by more than the margin; it has no results.",
    "failed": "A factor whose rescaling, training, prediction or evaluation stopped with an error; it is shown "
              "in the figures but has no results.",
    "coarsest-equivalent": "The default rule: recommend the coarsest pixel size whose mean IoU is not "
                           "significantly worse than the best one (coarser pixels: more cells per field, less "
                           "storage, faster analysis).",
    "vanished objects": "Annotated cells that disappear when the mask is downsampled (smaller than a pixel).",
}


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
        out.append({"factor": str(factor), "stage": stage, "cause": _plain_cause(cause), "log": log})
    return out


def _last_cause(text: str) -> str:
    """The most telling line of an error text: the last `SomethingError: message` line, else the first."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return "unknown error"
    hits = [ln for ln in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b:?", ln)]
    return hits[-1] if hits else lines[0]


def _plain_cause(cause) -> str:
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
    """The glossary (or the named terms of it) as a markdown list."""
    keys = list(GLOSSARY) if terms is None else [t for t in terms if t in GLOSSARY]
    return "\n".join(f"- **{k}**: {GLOSSARY[k]}" for k in keys)


def package_note(plan: Plan) -> str:
    """The pretrained package's own pixel size, beside the measured best."""
    declared = plan.package.get("pixel_size_um")
    if declared is None:
        return "The package declares no pixel size."
    text = f"The package declares {declared:.4g} µm"
    if plan.pixel_size_um:
        ratio = declared / plan.pixel_size_um
        text += f" ({ratio:.3g}x this data's pixel size"
        k = np.log2(ratio)
        text += f", factor {parse_factor(2.0 ** round(k)).name})." if abs(k - round(k)) < 0.05 else ")."
    else:
        text += "; this data's pixel size is unknown."
    return text


def write_sweep_report(config: SweepConfig, plan: Plan, summary, selection, figures: dict, result: dict,
                       acquisition) -> Path:
    """report.md and a self-contained report.html, read by a biologist: failures first, then the
    recommendation in one sentence, figures, tables with units, the acquisition plan and a glossary."""
    from rescale4dl_bmz.decide.acquisition_text import plan_format
    from rescale4dl_bmz.metrics.tables import SAMPLED_GRID_NOTE
    from rescale4dl_bmz.sweep.halving import halving_markdown

    out = Path(plan.out)
    rel = {k: Path(v).relative_to(out).as_posix() for k, v in figures.items()}
    native = summary[(summary["grid"] == "native") | summary["grid"].isna()].copy()
    native["scale"] = [parse_factor(f).scale for f in native["factor"]]
    native = native.sort_values("scale", kind="stable")
    if plan.pixel_size_um:  # failed and pruned rows too
        native["pixel_size_um"] = plan.pixel_size_um * native["scale"]
    size = f"{plan.pixel_size_um:.4g} µm" if plan.pixel_size_um else "unknown (results in multiples of it)"
    gains = "".join(f"- {line}\n" for line in gains_lines(selection))
    sections = []
    failures = failure_records(result.get("failed"))
    if failures:
        sections.append(("!Failed factors", (f"{selection.caveat}\n\n" if selection.caveat else "")
                                            + "These factors have no results; the recommendation is made among the "
                                            "others.\n\n" + "\n".join(f"- {failure_sentence(r, markdown=True)}"
                                                                      for r in failures)))
    elif selection.caveat:
        sections.append(("!Before you act on this", selection.caveat))
    x_axis = "pixel size in µm" if plan.pixel_size_um else "share of a cell's diameter one pixel covers"
    sections += [
        ("Why this pixel size", f"{selection.reason}\n\nCompared with {selection.baseline}"
                                f"{' (the original pixel size)' if selection.baseline == 'og' else ''}:\n\n{gains}"),
        ("Quality against pixel size",
         f"![Mean IoU against pixel size, native grid]({rel['iou_native']})\n\n"
         f"Each box holds the IoU of every test image at one factor (x axis: {x_axis}; the recommended factor in "
         "orange; failed factors marked with a red x). The dotted grey line is the theoretical throughput (right "
         f"axis).\n\n{GRID_NOTE}"),
        ("Results (native grid)", markdown_table(human_table(native, QUALITY_COLUMNS))),
        ("Cost and throughput", markdown_table(human_table(native, COST_COLUMNS))),
        *([("Successive halving", halving_markdown(result["halving"]))] if result.get("halving") else []),
        ("The same field at each pixel size",
         f"![image, annotation and prediction per factor]({rel['examples']})\n\n"
         "Rows: factors, finest first (failed factors have no row); every row shows the same area of the "
         "first test image. The prediction is drawn over the image in the annotation's colours."),
        ("Cell diameters", f"![annotated and predicted cell diameters per factor]({rel['diameters']})"),
        ("Acquisition plan", f"A camera field the size of these images ({plan.image_shape[1]} x "
                             f"{plan.image_shape[0]} px), one field every {config.tau_s:g} s (`rescale4dl plan` "
                             "takes your own camera):\n\n" + plan_format(acquisition, markdown=True)),
        ("Data", f"{len(plan.items)} images ({len(plan.train)} for training, {len(plan.test)} for testing: "
                 f"{', '.join(plan.test)}), task {config.task}, original pixel size {size}, factors "
                 f"{' '.join(plan.factors)}, rescaling mode {config.mode}."
                 + (f" Skipped before training (pruned): {', '.join(f'{k} ({v})' for k, v in plan.pruned.items())}."
                    if plan.pruned else "")),
        ("Sampled grid, for comparison with the paper",
         f"![Mean IoU against pixel size, sampled grid]({rel['iou_sampled']})\n\n{SAMPLED_GRID_NOTE}"
         + undefined_classes_note(summary)),
    ]
    if plan.package:
        sections.insert(1 if failures else 0, ("Pretrained package",
                                                f"`{config.model}`: {plan.package.get('name')}, "
                                                f"{plan.package.get('task')} output. {package_note(plan)}"))
    if result.get("package"):
        axes = ("pixel size on the axes" if plan.pixel_size_um is not None else
                "unit axis scales: the original pixel size was not given, so no physical pixel size is claimed")
        sections.append(("Model package", f"`{Path(result['package']).name}`, next to this report (bioimage.io "
                                          f"format, {axes}; Keras, SavedModel and ONNX weights; one package for the "
                                          "Model Zoo and for deepImageJ in Fiji). Bring new images to "
                                          f"{selection.pixel_size_text} first with "
                                          "`fiji_macros/resample_to_model_pixel_size.ijm`."))
    sections.append(("Glossary", glossary_markdown()))
    lead = recommendation_sentence(selection, plan.pixel_size_um)
    md, _ = write_report(out, sections, title=f"Best pixel size for {config.task} segmentation", lead=lead)
    return md


def undefined_classes_note(summary) -> str:
    """' Undefined classes (NaN IoU): ds16 (sampled grid, 3 of 3 images), ...' or ''."""
    if "n_images_undefined_class" not in summary.columns:
        return ""
    rows = summary[summary["n_images_undefined_class"].fillna(0) > 0]
    if rows.empty:
        return ""
    return " Undefined classes (NaN IoU, left out of the semantic mean): " + ", ".join(
        f"{r.factor} ({r.grid} grid, {int(r.n_images_undefined_class)} of {int(r.n_images)} images)"
        for r in rows.itertuples()) + "."

