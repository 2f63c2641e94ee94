"""The per-factor stages as plain functions: data -> train -> predict -> evaluate. `flow.py` wires
them into a Prefect flow; here they stay testable without Prefect.

Every stage is idempotent (`markers`): it skips itself while its done-marker holds, and writes
its outputs, then the marker. A stage's failure becomes `FactorFailed` (`factor_stage`), so one
factor failing leaves the others running.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import time
import traceback
from pathlib import Path

import numpy as np

from rescale4dl_bmz.errors import FactorFailed, is_environment_fault, one_line
from rescale4dl_bmz.factors import parse_factor
from rescale4dl_bmz.files.band_writer import stored_shape
from rescale4dl_bmz.files.images import read_image, read_mask, write_tiff
from rescale4dl_bmz.files.dataset import read_pair
from rescale4dl_bmz.files.text_files import write_csv
from rescale4dl_bmz.sweep.config import SweepConfig
from rescale4dl_bmz.sweep.factor_labels import semantic_labels
from rescale4dl_bmz.sweep.markers import is_done, mark_done, marker_path, read_done
from rescale4dl_bmz.sweep.plan import Plan, crop_pair, factor_dir
from rescale4dl_bmz.models.prediction import WARM_REPEATS, warm_inference_seconds

log = logging.getLogger(__name__)

STAGES = ("data", "train", "predict", "evaluate")


def factor_stage(stage: str):
    """A per-factor stage whose failure becomes `FactorFailed`: one plain line for people, the
    traceback in `<factor>/logs/<stage>.error.log` (a training's own log: `<factor>/logs/train.log`)."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(config: SweepConfig, plan: Plan, factor: str) -> dict:
            try:
                return fn(config, plan, factor)
            except Exception as exc:
                from rescale4dl_bmz.sweep.tensorflow_worker import WorkerJobFailed

                if is_environment_fault(exc):
                    raise  # a full or read-only disk stops the whole sweep, not one factor

                log_file = factor_dir(plan, factor) / "logs" / f"{stage}.error.log"
                log_file.parent.mkdir(parents=True, exist_ok=True)
                log_file.write_text("".join(traceback.format_exception(exc)))
                if isinstance(exc, WorkerJobFailed):
                    raise FactorFailed(factor, stage, exc.cause, exc.log) from exc
                raise FactorFailed(factor, stage, one_line(exc), str(log_file)) from exc
        return run
    return wrap


@factor_stage("data")
def stage_data(config: SweepConfig, plan: Plan, factor: str) -> dict:
    """Rescale every image and mask to this factor; semantic labels too (for the semantic task)."""
    stale = marker_path(plan, factor, "data").exists()
    if is_done(plan, factor, "data"):
        return read_done(plan, factor, "data")
    if stale:  # the marker no longer vouches for these files: write them all again
        for sub in ("images", "masks", "labels"):
            shutil.rmtree(factor_dir(plan, factor) / sub, ignore_errors=True)
    from rescale4dl_bmz.data.ladder import write_factor

    f = parse_factor(factor)
    root = factor_dir(plan, factor)
    pixel = f.pixel_size(plan.pixel_size_um)
    rows = write_factor(plan.infos(), plan.out, f, multiple=plan.crop_multiple, mode=config.mode,
                        crop_anchor=config.crop, channel=config.channel)
    if config.task == "semantic":
        for item in plan.items:
            name = item["name"]
            if config.label_source == "from-og":
                _, og_mask = crop_pair(*read_pair(plan.pair(name), config.channel), plan, config.crop)
                sem = semantic_labels(config, f, og_mask=og_mask)
            else:
                sem = semantic_labels(config, f, factor_mask=read_mask(root / "masks" / f"{name}.tif"))
            write_tiff(root / "labels" / f"{name}.tif", sem.astype(np.uint8), pixel)
    n_objects, vanished = sum(r["objects"] for r in rows), sum(r["vanished"] for r in rows)
    log.info("[%s] data: %d images rescaled (%d objects, %d vanished)", factor, len(rows), n_objects, vanished)
    subs = ("images", "masks", "labels") if config.task == "semantic" else ("images", "masks")
    files = [root / sub / f"{item['name']}.tif" for sub in subs for item in plan.items]
    return mark_done(plan, factor, "data", {"n_images": len(rows), "n_objects": n_objects,
                                            "vanished_objects": vanished, "pixel_size_um": pixel, "path": str(root)},
                     files)


def training_inputs(config: SweepConfig, plan: Plan, factor: str) -> tuple:
    """This factor's `TrainConfig` and its training image and mask files (the 0/1/2 labels when they
    were derived at og and rescaled: `label_source: from-og`)."""
    semantic_given = config.task == "semantic" and config.label_source == "from-og"
    tc = config.train_config(factor, parse_factor(factor).pixel_size(plan.pixel_size_um))
    if semantic_given:
        tc = tc.model_copy(update={"masks_are_semantic": True})
    root = factor_dir(plan, factor)
    images = [root / "images" / f"{n}.tif" for n in plan.train]
    masks = [root / ("labels" if semantic_given else "masks") / f"{n}.tif" for n in plan.train]
    return tc, images, masks


@factor_stage("train")
def stage_train(config: SweepConfig, plan: Plan, factor: str) -> dict:
    """Train this factor's model on the training images (skipped when a complete model exists)."""
    stale = marker_path(plan, factor, "train").exists()
    if is_done(plan, factor, "train"):
        return read_done(plan, factor, "train")
    from rescale4dl_bmz.sweep.tensorflow_worker import shared_worker

    model_dir = factor_dir(plan, factor) / "model"
    root = factor_dir(plan, factor)
    tc, images, masks = training_inputs(config, plan, factor)
    t0 = time.perf_counter()
    if model_dir.exists() and (stale or not (model_dir / "cost.json").is_file()):
        # a model its marker no longer vouches for, or an incomplete one: train again
        log.warning("[%s] train: %s is damaged or incomplete; training again", factor, model_dir)
        shutil.rmtree(model_dir)
    if not model_dir.exists():
        log.info("[%s] train: %d images", factor, len(images))
        shared_worker().train(images, masks, tc, model_dir, root / "logs" / "train.log")
    cost = json.loads((model_dir / "cost.json").read_text())
    log.info("[%s] train: done in %.1f s", factor, time.perf_counter() - t0)
    return mark_done(plan, factor, "train", {"model": str(model_dir), **{k: cost.get(k) for k in
                                             ("wall_time_s", "steps", "epochs", "pixels_seen")}},
                     sorted(p for p in model_dir.rglob("*") if p.is_file()))


def predict_files(config: SweepConfig, plan: Plan, factor: str, sources: list[Path], targets: list[Path],
                  pixel: float | None) -> dict:
    """Segment `sources` into `targets` (TIFFs at `pixel` µm): {"first_pass_s", "warm_s"}.

    Our trained model runs in the TensorFlow worker that trained it (no TensorFlow import here);
    a pretrained package runs here, on bioimageio.core."""
    if config.model is None:
        from rescale4dl_bmz.sweep.tensorflow_worker import shared_worker

        return shared_worker().predict(factor_dir(plan, factor) / "model", sources, targets, pixel,
                                       factor_dir(plan, factor) / "logs" / "predict.log")
    from rescale4dl_bmz.bioimageio.pretrained.runner import load_package

    model = load_package(config.model)
    try:
        t0 = time.perf_counter()
        for source, target in zip(sources, targets):
            write_tiff(target, model.predict(read_image(source)), pixel)
        first_pass = time.perf_counter() - t0
        return {"first_pass_s": first_pass, "warm_s": warm_inference_seconds(model.predict, read_image(sources[0]))}
    finally:
        model.close()


@factor_stage("predict")
def stage_predict(config: SweepConfig, plan: Plan, factor: str) -> dict:
    """Predict the test images at this factor; records the inference time, measured warm."""
    if is_done(plan, factor, "predict"):
        return read_done(plan, factor, "predict")
    out = factor_dir(plan, factor) / "predictions"
    sources = [factor_dir(plan, factor) / "images" / f"{n}.tif" for n in plan.test]
    targets = [out / f"{n}.tif" for n in plan.test]
    timing = predict_files(config, plan, factor, sources, targets, parse_factor(factor).pixel_size(plan.pixel_size_um))
    sizes = [int(np.prod(stored_shape(s))) for s in sources]  # pixels, from the headers (no second read)
    per_image = timing["warm_s"] / sizes[0] * float(np.mean(sizes))
    log.info("[%s] predict: %d images; %.3g s per image (warm)", factor, len(plan.test), per_image)
    return mark_done(plan, factor, "predict", {
        "predictions": str(out), "inference_s_per_image": per_image, "inference_s": per_image * len(sizes),
        "inference_first_pass_s": timing["first_pass_s"], "inference_pixels": int(sum(sizes)),
        "inference_method": f"median of {WARM_REPEATS} warm calls on {plan.test[0]} (after the first pass, which "
                            "includes tracing), scaled to the mean test image"},
        targets)


@factor_stage("evaluate")
def stage_evaluate(config: SweepConfig, plan: Plan, factor: str) -> dict:
    """Score the test predictions on the factor's own grid and on the original one (both grids)."""
    if is_done(plan, factor, "evaluate"):
        return read_done(plan, factor, "evaluate")
    from rescale4dl_bmz.metrics.tables import evaluate_native, evaluate_pair, per_image_table, per_object_table
    from rescale4dl_bmz.data.labels import instance_to_semantic

    f = parse_factor(factor)
    root = factor_dir(plan, factor)
    objects, images = [], []
    for name in plan.test:
        pred = read_mask(root / "predictions" / f"{name}.tif")
        mask = read_mask(root / "masks" / f"{name}.tif")
        _, og_mask = crop_pair(*read_pair(plan.pair(name), config.channel), plan, config.crop)
        common = dict(pixel_size_um=plan.pixel_size_um, fov_area_px=float(og_mask.size),
                      diameter=plan.size_measure, label_style=config.label_style)
        if config.task == "semantic":
            gt = read_mask(root / "labels" / f"{name}.tif")
            og_gt = instance_to_semantic(og_mask, config.label_style)
            sampled = evaluate_pair(gt, pred, "semantic", name, f, "sampled", gt_instances=mask, **common)
            native = evaluate_native(og_gt, pred, "semantic", name, f, gt_instances=og_mask, **common)
        else:
            common.pop("label_style")
            sampled = evaluate_pair(mask, pred, "instance", name, f, "sampled", **common)
            native = evaluate_native(og_mask, pred, "instance", name, f, **common)
        for rows, row in (sampled, native):
            objects.extend(rows)
            images.append(row)
    write_csv(root / "per_object.csv", per_object_table(objects))
    write_csv(root / "per_image.csv", per_image_table(images))
    ious = {g: float(np.mean([r["iou"] for r in images if r["grid"] == g])) for g in ("sampled", "native")}
    log.info("[%s] evaluate: IoU %.3f (sampled grid), %.3f (native grid)", factor, ious["sampled"], ious["native"])
    return mark_done(plan, factor, "evaluate", {"iou_sampled": ious["sampled"], "iou_native": ious["native"]},
                     [root / "per_object.csv", root / "per_image.csv"])

