"""After every factor: merge the tables, choose the pixel size, draw the figures, export the chosen
model, write the report, and publish them as Prefect artifacts. A failed factor stays in the
tables (status, stage, cause, log) and is never the baseline of a claimed gain."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rescale4dl_bmz.errors import FactorFailed, one_line
from rescale4dl_bmz.factors import parse_factor
from rescale4dl_bmz.files.text_files import read_csv, write_csv, write_json
from rescale4dl_bmz.files.images import read_image, read_mask
from rescale4dl_bmz.files.dataset import read_pair
from rescale4dl_bmz.sweep.config import SweepConfig
from rescale4dl_bmz.sweep.plan import Plan, crop_pair, factor_dir
from rescale4dl_bmz.sweep.report import failure_records, failure_sentence, package_note, write_sweep_report

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """How one factor's chain of stages ended."""

    factor: str
    status: str = "running"       # done | failed | pruned | stopped (by successive halving)
    stages: dict = field(default_factory=dict)
    failure: dict | None = None   # {"stage", "cause" (one line), "log" (path)}

    def fail(self, stage: str, exc: BaseException) -> None:
        """Record the failure: a `FactorFailed` as it is, any other exception as one line without a log."""
        self.status = "failed"
        self.failure = exc.as_dict() if isinstance(exc, FactorFailed) else {
            "stage": stage, "cause": one_line(exc), "log": None}


# the columns each factor adds to summary.csv beside its scores: how it ended and what it cost
OUTCOME_COLUMNS = ("status", "failed_stage", "error", "log", "wall_time_s", "steps", "epochs", "pixels_seen",
                   "inference_s", "inference_s_per_image", "vanished_objects")


def outcome_rows(plan: Plan, outcomes: list[Outcome]) -> list[dict]:
    """One row per factor (pruned ones too) with its status, failure and costs (`OUTCOME_COLUMNS`)."""
    rows = []
    for o in outcomes:
        train, pred = o.stages.get("train", {}), o.stages.get("predict", {})
        n_test = max(len(plan.test), 1)
        failure = o.failure or {}
        rows.append({"factor": o.factor, "status": o.status, "failed_stage": failure.get("stage"),
                     "error": failure.get("cause"), "log": failure.get("log"),
                     "wall_time_s": train.get("wall_time_s"), "steps": train.get("steps"),
                     "epochs": train.get("epochs"), "pixels_seen": train.get("pixels_seen"),
                     "inference_s": pred.get("inference_s"),
                     "inference_s_per_image": pred.get("inference_s_per_image",
                                                       pred["inference_s"] / n_test if "inference_s" in pred else None),
                     "vanished_objects": o.stages.get("data", {}).get("vanished_objects")})
        if "halving" in o.stages:
            from rescale4dl_bmz.sweep.halving import halving_row

            rows[-1].update(halving_row(o.stages["halving"]))
    for factor, reason in plan.pruned.items():
        rows.append({"factor": factor, "status": "pruned", "error": reason})
    return rows


def finish(config: SweepConfig, plan: Plan, outcomes: list[Outcome]) -> dict:
    """Gather the tables, choose the pixel size, draw the figures, export the model, write the report.

    `result["failed"]` maps each failed factor to {"stage", "cause", "log"}; `result["headline"]`
    opens with the failures, and no gain is claimed against a factor that did not finish."""
    import pandas as pd

    from rescale4dl_bmz.metrics.summaries import summarize

    out = Path(plan.out)
    done = [o.factor for o in outcomes if o.status == "done"]
    failed = {o.factor: o.failure for o in outcomes if o.status == "failed"}
    result = {"n_done": len(done), "n_requested": len(outcomes), "failed": failed, "pruned": plan.pruned}
    halving = halving_decision(plan, outcomes)
    if halving:
        result["halving"] = halving
    from rescale4dl_bmz.sweep.halving import HALVING_COLUMNS

    columns = ["factor", *OUTCOME_COLUMNS, *(HALVING_COLUMNS if halving else ())]
    costs = pd.DataFrame(outcome_rows(plan, outcomes), columns=columns)
    if not done:
        write_csv(out / "summary.csv", costs)
        result["headline"] = "No recommendation: no factor finished. " + " ".join(
            failure_sentence(r) for r in failure_records(failed))
        return result
    per_image = pd.concat([read_csv(out / f / "per_image.csv") for f in done], ignore_index=True)
    per_object = pd.concat([read_csv(out / f / "per_object.csv") for f in done], ignore_index=True)
    write_csv(out / "per_image.csv", per_image)
    write_csv(out / "per_object.csv", per_object)
    summary = summarize(per_image, per_object, tau=config.tau_s)
    summary = summary.merge(costs, on="factor", how="outer")
    summary["scale"] = [parse_factor(f).scale for f in summary["factor"]]
    summary = summary.sort_values(["grid", "scale"], na_position="last", kind="stable")
    write_csv(out / "summary.csv", summary)
    result["summary_csv"] = str(out / "summary.csv")

    from rescale4dl_bmz.decide.select import select_factor

    selection = select_factor(summary, per_image, config.criterion, config.tolerance,
                              pixel_size_um=plan.pixel_size_um)
    finished = summary[summary["status"] == "done"]
    write_json(out / "selection.json", selection.to_dict())
    result.update(chosen=selection.factor, pixel_size=selection.pixel_size_text, reason=selection.reason,
                  baseline=selection.baseline, caveat=selection.caveat)
    acquisition = acquisition_plan(config, plan, finished, selection)
    write_csv(out / "plan.csv", acquisition)
    figures = draw_figures(config, plan, summary, per_image, per_object, selection.factor)
    if config.export and config.model is None:
        result["package"] = str(export_chosen(plan, selection.factor, config.package))
    result["report"] = str(write_sweep_report(config, plan, summary, selection, figures, result, acquisition))
    result["headline"] = selection.statement[0].upper() + selection.statement[1:]
    if plan.package:
        result["headline"] += " " + package_note(plan)
    return result


def halving_decision(plan: Plan, outcomes: list[Outcome]) -> dict | None:
    """The successive-halving decision of the sweep (`sweep.halving`); None in an exhaustive sweep."""
    import json

    from rescale4dl_bmz.sweep.halving import HALVING_FILE

    if not any("halving" in o.stages for o in outcomes):
        return None
    return json.loads((Path(plan.out) / HALVING_FILE).read_text(encoding="utf-8"))


def acquisition_plan(config: SweepConfig, plan: Plan, finished, selection):
    """Objects and bytes per field and per hour at each factor, for a camera the size of the images."""
    from rescale4dl_bmz.decide.acquisition import plan_acquisition, plan_areas, plan_density
    from rescale4dl_bmz.decide.select import select_object_areas

    factors = list(selection.table["factor"])
    areas = plan_areas(factors, select_object_areas(finished))
    camera = (plan.image_shape[1], plan.image_shape[0])
    return plan_acquisition(factors, {f: a for f, (a, _) in areas.items()}, camera, config.tau_s,
                            plan.pixel_size_um, selection.factor, density=plan_density(finished))


def draw_figures(config: SweepConfig, plan: Plan, summary, per_image, per_object, chosen: str) -> dict:
    """The paper-style figures of this sweep (paths by name); failed factors are marked, not dropped."""
    import pandas as pd

    from rescale4dl_bmz.sweep.figures import plot_diameter_distributions, plot_examples, plot_iou_vs_coverage

    fig = Path(plan.out) / "figures"
    done = summary[summary["status"] == "done"]
    failed = list(summary.loc[summary["status"] == "failed", "factor"].drop_duplicates())
    paths = {}
    measure = plan.size_measure.replace("_", " ")
    for grid in ("native", "sampled"):
        name = "iou_vs_coverage.png" if grid == "native" else "iou_vs_coverage_sampled.png"
        title = (f"{config.task} segmentation: quality against pixel size ({grid} grid"
                 + (", the one to trust)" if grid == "native" else ", the paper's view only: it flatters coarse "
                                                               "factors)"))
        title += f"\nobject size: {measure}"
        if grid == "sampled":
            rows = done[(done["grid"] == "sampled") & (done.get("n_images_undefined_class", 0) > 0)]
            if len(rows):
                title += f"; NaN class at {', '.join(rows['factor'])}"
        paths[f"iou_{grid}"] = plot_iou_vs_coverage(per_image, done, fig / name, grid=grid, chosen=chosen,
                                                    title=title, pixel_size_um=plan.pixel_size_um, failed=failed)
    gt = per_object[per_object["source"] == "gt"].rename(columns={"diameter": "gt_diameter"})
    pr = per_object[per_object["source"] == "pred"].rename(columns={"diameter": "pred_diameter"})
    both = pd.concat([gt, pr], ignore_index=True)
    paths["diameters"] = plot_diameter_distributions(both, fig / "diameters.png", "gt_diameter", "pred_diameter")
    paths["examples"] = plot_examples(example_crops(config, plan, list(done.drop_duplicates("factor")["factor"])),
                                      fig / "examples.png", pixel_size_um=plan.pixel_size_um, task=config.task)
    return paths


def example_field(mask: np.ndarray, side: int, multiple: int) -> tuple[int, int]:
    """Top-left corner (original pixels, on the ladder's grid) of the `side`-wide field with the most
    annotated cells, so the example panels show cells rather than empty background."""
    h, w = mask.shape[:2]
    step = max(multiple, side // 4 // multiple * multiple, 1)
    best, corner = -1, (0, 0)
    for r in range(0, max(h - side, 0) + 1, step):
        for c in range(0, max(w - side, 0) + 1, step):
            count = len(np.unique(mask[r:r + side, c:c + side]))
            if count > best:
                best, corner = count, (r, c)
    return corner


def example_crops(config: SweepConfig, plan: Plan, factors: list[str], field_px: int = 160) -> list:
    """(factor, image, ground truth, prediction) crops of the same field of the first test image,
    the field with the most cells (side `field_px` original pixels, at most the image)."""
    name = plan.test[0]
    multiple = max([plan.crop_multiple] + [parse_factor(f).step for f in factors if parse_factor(f).is_down])
    side = max(min(field_px, *plan.image_shape) // multiple * multiple, multiple)
    _, og_mask = crop_pair(*read_pair(plan.pair(name), config.channel), plan, config.crop)
    r0, c0 = example_field(og_mask, side, multiple)
    crops = []
    for factor in sorted(factors, key=lambda n: parse_factor(n).scale):
        f, root = parse_factor(factor), factor_dir(plan, factor)
        sl = tuple(slice(int(round(a / f.scale)), int(round((a + side) / f.scale))) for a in (r0, c0))
        gt_dir = "labels" if config.task == "semantic" else "masks"
        arrays = [read_image(root / "images" / f"{name}.tif"), read_mask(root / gt_dir / f"{name}.tif"),
                  read_mask(root / "predictions" / f"{name}.tif")]
        crops.append((factor, *(a[sl] for a in arrays)))
    return crops


def export_chosen(plan: Plan, factor: str, metadata=None) -> Path:
    """The chosen model as one bioimage.io package, `model.zip`, for the Model Zoo and deepImageJ
    (pixel size on the axes when known, ONNX weights, post-processing macro); it passes bioimageio's test."""
    from rescale4dl_bmz.sweep.tensorflow_worker import shared_worker

    out = Path(plan.out)  # built and tested in the TensorFlow worker: no TensorFlow import here
    package = Path(shared_worker().export(out, factor, out / "model.zip", metadata, out / "logs" / "export.log"))
    log.info("exported %s", package)
    return package
