"""The sweep's stages as plain functions: prepare, then per factor data -> train -> predict ->
evaluate, then finish (tables, selection, export, report). `pipeline.py` wires them into a
Prefect flow; here they stay testable without Prefect.

Every stage is idempotent: it writes its outputs atomically and a `<stage>.done.json` marker
last, and skips itself when the marker is there. So a rerun after a crash (even `kill -9` in the
middle of a training) redoes only what had not finished, and gives the same tables.

Done-markers list the files they vouch for (size, modification time) and the digest of the marker
of the stage they built on; a marker whose files changed or went missing is dropped and its stage
redone (`check_done`).

RUN_DIR layout: `record.json` (the run record, written first), `config.yaml` (resolved), `run.json`, `advice.csv`, `<factor>/{images,masks,labels}`,
`<factor>/model/`, `<factor>/predictions/`, `<factor>/{per_image,per_object}.csv`, `per_image.csv`,
`per_object.csv`, `summary.csv`, `selection.json`, `figures/`, `report.md`, `report.html`, `model.zip`.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rescale4dl_bmz.sweep.config import SweepConfig
from rescale4dl_bmz.files.dataset import (Pair, dataset_pixel_size, ensure_outside, inspect_dataset, read_csv, read_mask, read_pair,
                      write_csv, write_json, write_text, write_tiff)
from rescale4dl_bmz.errors import FactorFailed, InputError, is_environment_fault, one_line
from rescale4dl_bmz.factors import Factor, coarsest_step, crop_slices, parse_factor

log = logging.getLogger(__name__)

STAGES = ("data", "train", "predict", "evaluate")


@dataclass
class Plan:
    """What `prepare` decided; small and JSON-serialisable (it keys the Prefect cache)."""

    out: str
    task: str
    factors: list[str]
    run_factors: list[str]              # factors not pruned
    pruned: dict[str, str]              # factor -> reason
    pixel_size_um: float | None
    crop_multiple: int
    items: list[dict]                   # name, image, mask, shape (original, uncropped), n_objects
    train: list[str]
    test: list[str]
    image_shape: list[int] = field(default_factory=list)  # cropped shape of the first image
    package: dict | None = None         # the pretrained package's description (PackageInfo.as_dict)
    size_measure: str = "width"         # the object size of every table ("width" or "equivalent_diameter")

    def pair(self, name: str) -> Pair:
        item = next(i for i in self.items if i["name"] == name)
        return Pair(name, Path(item["image"]), Path(item["mask"]))

    def infos(self) -> list:
        """The validated items as `dataset.ItemInfo` records (pixel size = the dataset's)."""
        from rescale4dl_bmz.files.dataset import ItemInfo

        return [ItemInfo(i["name"], Path(i["image"]), Path(i["mask"]), tuple(i["shape"]), self.pixel_size_um,
                         i["n_objects"]) for i in self.items]


# ----------------------------------------------------------------------------- prepare

def split_names(names: list[str], config: SweepConfig) -> tuple[list[str], list[str]]:
    """Training and test images: as named in the config, or a seeded fraction held out."""
    if config.test_images:
        missing = sorted(set(config.test_images) - set(names))
        if missing:
            raise InputError(f"test_images {missing} are not among the images in {config.images}")
        test = [n for n in names if n in set(config.test_images)]
    else:
        if len(names) < 2:
            raise InputError(f"{config.images}: a sweep needs at least 2 images (one to train on, one to test on)")
        n_test = max(1, int(round(len(names) * config.test_fraction)))
        rng = np.random.default_rng(config.seed)
        test = sorted(rng.choice(names, size=min(n_test, len(names) - 1), replace=False).tolist())
    train = [n for n in names if n not in set(test)]
    if not train:
        raise InputError("every image is a test image: nothing left to train on")
    return train, test


def names_for_test(names: list[str], config: SweepConfig) -> list[str]:
    """A pretrained model trains on nothing: every image is a test image unless some are named."""
    if not config.test_images:
        return names
    missing = sorted(set(config.test_images) - set(names))
    if missing:
        raise InputError(f"test_images {missing} are not among the images in {config.images}")
    return [n for n in names if n in set(config.test_images)]


def check_package(config: SweepConfig):
    """Validate the bioimage.io package (and load its weights once) before any rescaling."""
    from rescale4dl_bmz.bioimageio.pretrained import inspect_package, load_package

    info = inspect_package(config.model)
    if info.task != config.task:
        raise InputError(f"{config.model}: the package does {info.task} segmentation "
                         f"({info.describe()}), but the sweep's task is {config.task}")
    load_package(config.model).close()
    return info


def _check_patch_sizes(config: SweepConfig, factors: list[Factor], min_side: int) -> None:
    """Every factor's patch must fit its images and be divisible by 2^depth (before any work); where
    the images are smaller than the paper's patch, one line of advice for all factors."""
    from rescale4dl_bmz.models.training import resolve_patch_size

    limited = []
    for f in factors:
        side = f.shape((min_side, min_side))[0]
        cfg = config.train_config(f.name).with_defaults()
        try:
            patch = resolve_patch_size(cfg, side)
        except InputError as exc:
            raise InputError(f"factor {f.name} (images {side} px): {exc}; drop that factor or use bigger "
                             "images") from None
        target = int(min(cfg.base_patch_size / f.scale, cfg.max_patch_size))
        if patch < target:
            limited.append(f"{f.name} {patch} px instead of {target}")
    if limited:
        log.warning("advice: your images (smallest side %d px) are smaller than the training patches of the "
                    "paper's recipe, so the networks train on smaller patches (%s) and see less of each field; "
                    "larger images give them more context.", min_side, ", ".join(limited))


def semantic_labels(config: SweepConfig, factor: Factor, og_mask: np.ndarray | None = None,
                    factor_mask: np.ndarray | None = None) -> np.ndarray:
    """0/1/2 labels at `factor`: derived at og and rescaled (label_source from-og, as the paper
    did), or derived from the factor's own instance mask (rescaled from `og_mask` if not given)."""
    from rescale4dl_bmz.data.labels import instance_to_semantic
    from rescale4dl_bmz.data.rescale import rescale_mask

    if config.label_source == "from-og":
        return rescale_mask(instance_to_semantic(og_mask, config.label_style), factor, config.mode)
    if factor_mask is None:
        factor_mask = rescale_mask(og_mask, factor, config.mode)
    return instance_to_semantic(factor_mask, config.label_style)


def _factor_labels(config: SweepConfig, og_mask: np.ndarray, factor: Factor) -> np.ndarray:
    """What the network of this factor learns from one cropped og mask (as `stage_data` makes it)."""
    from rescale4dl_bmz.data.rescale import rescale_mask

    if config.task != "semantic":
        return rescale_mask(og_mask, factor, config.mode)
    return semantic_labels(config, factor, og_mask)


def plan_sweep(config: SweepConfig) -> tuple[Plan, list]:
    """Every check on data and config together, before a single byte is written: (plan, advice)."""
    ensure_outside(config.out, config.images, config.masks, *([config.model] if config.model else []))
    package = check_package(config) if config.model is not None else None
    factors = config.factor_list
    multiple = coarsest_step(factors)
    infos = inspect_dataset(config.images, config.masks, config.channel, config.pixel_size_um, min_side=multiple)
    pixel = dataset_pixel_size(infos)
    names = [i.name for i in infos]
    if config.model is None:
        empty = [str(i.mask) for i in infos if i.n_objects == 0]
        if len(empty) == len(infos):
            raise InputError(f"{config.masks}: every mask is empty; nothing to learn from")
    train, test = split_names(names, config) if config.model is None else ([], names_for_test(names, config))
    cropped = [min(s // multiple * multiple for s in i.shape) for i in infos]
    if config.model is None:
        _check_patch_sizes(config, factors, min(cropped))
        _check_training_split(config, infos, train, factors, multiple)
    advice = advise_dataset(config, infos, factors, pixel)
    pruned = {a.factor: a.reason for a in advice if a.hopeless} if config.prune else {}
    run_factors = [f.name for f in factors if f.name not in pruned]
    if not run_factors:
        raise InputError("every factor was pruned as hopeless; set prune: false or choose other factors")
    rows, cols = crop_slices(infos[0].shape, multiple, config.crop)
    plan = Plan(out=str(Path(config.out).resolve()), task=config.task, factors=[f.name for f in factors],
                run_factors=run_factors, pruned=pruned, pixel_size_um=pixel, crop_multiple=multiple,
                items=[{"name": i.name, "image": str(i.image.resolve()), "mask": str(i.mask.resolve()),
                        "shape": list(i.shape), "n_objects": i.n_objects} for i in infos],
                train=train, test=test, image_shape=[rows.stop - rows.start, cols.stop - cols.start],
                package=package.as_dict() if package else None, size_measure=advice[0].size_measure)
    return plan, advice


def run_record(config: SweepConfig, plan: Plan):
    """The run folder's record of this sweep: config, a stamp of every input file, code version."""
    from rescale4dl_bmz.files.run_folder import make_record

    files = {f"image:{i['name']}": i["image"] for i in plan.items}
    files.update({f"mask:{i['name']}": i["mask"] for i in plan.items})
    if config.model is not None:
        files["model"] = config.model
    return make_record(config, files)


def write_prepared(config: SweepConfig, plan: Plan, advice) -> None:
    """config.yaml, run.json and advice.csv (after the run record)."""
    import pandas as pd

    out = Path(config.out)
    write_text(out / "config.yaml", config.to_yaml())
    write_json(out / "run.json", {"task": config.task, "pixel_size_um": plan.pixel_size_um, "factors": plan.factors,
                                  "run_factors": plan.run_factors, "pruned": plan.pruned,
                                  "image_shape": plan.image_shape, "dataset": str(config.images),
                                  "train": plan.train, "test": plan.test,
                                  "model": str(config.model) if config.model else None,
                                  "package": plan.package})
    write_csv(out / "advice.csv", pd.DataFrame([a.as_dict() for a in advice]))
    log.info("%d images (%d train, %d test), pixel size %s, factors %s%s", len(plan.items), len(plan.train),
             len(plan.test), f"{plan.pixel_size_um:.4g} µm" if plan.pixel_size_um else "unknown",
             " ".join(plan.run_factors), f"; pruned {', '.join(plan.pruned)}" if plan.pruned else "")


def prepare(config: SweepConfig, on_change: str = "refuse") -> Plan:
    """Validate data and config together, split, advise (and prune); then write the run record
    (refusing a folder that holds another run, see `run_folder.open_record`), config.yaml and run.json."""
    from rescale4dl_bmz.files.run_folder import open_record

    plan, advice = plan_sweep(config)
    open_record(config.out, run_record(config, plan), on_change)
    write_prepared(config, plan, advice)
    return plan


def _check_training_split(config: SweepConfig, infos, train: list[str], factors: list[Factor],
                          multiple: int) -> None:
    """Every factor's training images must give a training and a validation set, by the rule
    training applies (`models.patches.split_data`), checked on the masks rescaled in memory."""
    from rescale4dl_bmz.models.patches import split_data
    from rescale4dl_bmz.models.training import resolve_min_foreground, resolve_patch_size

    items = [i for i in infos if i.name in set(train)]
    masks = []
    for info in items:
        rows, cols = crop_slices(info.shape, multiple, config.crop)
        masks.append(read_mask(info.mask)[rows, cols])
    for f in factors:
        cfg = config.train_config(f.name).with_defaults()
        labels = [_factor_labels(config, m, f) for m in masks]
        patch = resolve_patch_size(cfg, min(min(m.shape) for m in labels))
        try:
            split_data(labels, labels, patch, fraction=cfg.validation_fraction, seed=cfg.seed,
                       min_fg=resolve_min_foreground(cfg, labels), whole_images=not cfg.is_unet,
                       names=[i.name for i in items])
        except InputError as exc:
            raise InputError(f"factor {f.name}: {exc} (training images: {', '.join(i.name for i in items)})") from None


def advise_dataset(config: SweepConfig, infos, factors: list[Factor], pixel: float | None):
    """The training-free advice for this dataset and network (diameters measured on the og masks)."""
    from rescale4dl_bmz.decide.advise import advise, receptive_field
    from rescale4dl_bmz.metrics.morphology import object_morphology

    diam, width = [], []
    for info in infos:
        m = object_morphology(read_mask(info.mask))
        diam.extend(m["equivalent_diameter"])
        width.extend(m["width"])
    arch = config.train_config("og").architecture if config.model is None else None
    if config.task == "instance":
        rf = receptive_field("stardist", grid=getattr(arch, "grid", 2))
    else:
        rf = receptive_field("unet", depth=getattr(arch, "depth", 2))
    if not diam:
        raise InputError(f"{config.masks}: no objects in any mask")
    return advise(diam, width, factors, rf, pixel)


# ----------------------------------------------------------------------------- stage bookkeeping

def factor_dir(plan: Plan, factor: str) -> Path:
    return Path(plan.out) / factor


UPSTREAM = {"train": "data", "predict": "train", "evaluate": "predict"}


def _marker(plan: Plan, factor: str, stage: str) -> Path:
    return factor_dir(plan, factor) / f"{stage}.done.json"


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _upstream(plan: Plan, factor: str, stage: str) -> str | None:
    """The stage this one builds on (`train` is skipped for a pretrained package)."""
    up = UPSTREAM.get(stage)
    if up == "train" and not _marker(plan, factor, "train").exists() and plan.package is not None:
        up = "data"
    return up


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_done(plan: Plan, factor: str, stage: str) -> dict | None:
    """The stage's done-marker when it still holds: every file it vouches for is there with the size
    and modification time it had, and the stage it built on is still the one it recorded."""
    path = _marker(plan, factor, stage)
    try:
        text = path.read_text(encoding="utf-8")
        info = json.loads(text)
        files = info["files"]
        root = factor_dir(plan, factor)
        if any(_stamp(root / rel) != list(stamp) for rel, stamp in files.items()):
            return None
        up = _upstream(plan, factor, stage)
        if up is not None:
            if check_done(plan, factor, up) is None:
                return None
            if info.get("upstream") != _digest(_marker(plan, factor, up).read_text(encoding="utf-8")):
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return info


def is_done(plan: Plan, factor: str, stage: str) -> bool:
    """Whether the stage finished and its outputs are still what it wrote (else it is redone)."""
    if check_done(plan, factor, stage) is not None:
        return True
    if _marker(plan, factor, stage).exists():
        log.warning("[%s] %s: the files its done-marker vouches for changed or are missing; redoing it", factor, stage)
        _marker(plan, factor, stage).unlink(missing_ok=True)
    return False


def marker_key(plan: Plan, factor: str, stage: str) -> str:
    """A cache key for Prefect: the valid marker's digest, else a fresh one (never a stale cache hit)."""
    import uuid

    info = check_done(plan, factor, stage)
    return _digest(_marker(plan, factor, stage).read_text(encoding="utf-8")) if info else uuid.uuid4().hex


def mark_done(plan: Plan, factor: str, stage: str, info: dict, files: list[Path] | None = None) -> dict:
    """Write the stage's done-marker last, vouching for `files` (size and modification time)."""
    root = factor_dir(plan, factor)
    info = {"factor": factor, "stage": stage, **info,
            "files": {p.relative_to(root).as_posix(): _stamp(p) for p in (files or [])}}
    up = _upstream(plan, factor, stage)
    if up is not None:
        info["upstream"] = _digest(_marker(plan, factor, up).read_text(encoding="utf-8"))
    write_json(_marker(plan, factor, stage), info)
    return info


def read_done(plan: Plan, factor: str, stage: str) -> dict:
    info = check_done(plan, factor, stage)
    if info is None:
        raise RuntimeError(f"{_marker(plan, factor, stage)}: not a valid done-marker")
    return info


# ----------------------------------------------------------------------------- per-factor stages

def factor_stage(stage: str):
    """A per-factor stage whose failure becomes `FactorFailed`: one plain line for people, the
    traceback in `<factor>/logs/<stage>.error.log` (a training's own log: `<factor>/logs/train.log`)."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(config: SweepConfig, plan: Plan, factor: str) -> dict:
            try:
                return fn(config, plan, factor)
            except Exception as exc:
                from rescale4dl_bmz.models.train_process import TrainingFailed

                if is_environment_fault(exc):
                    raise  # a full or read-only disk stops the whole sweep, not one factor

                log_file = factor_dir(plan, factor) / "logs" / f"{stage}.error.log"
                log_file.parent.mkdir(parents=True, exist_ok=True)
                log_file.write_text("".join(traceback.format_exception(exc)))
                if isinstance(exc, TrainingFailed):
                    raise FactorFailed(factor, stage, exc.cause, exc.log) from exc
                raise FactorFailed(factor, stage, one_line(exc), str(log_file)) from exc
        return run
    return wrap


def crop_pair(image: np.ndarray, mask: np.ndarray, plan: Plan, anchor: str) -> tuple[np.ndarray, np.ndarray]:
    """The pair cropped once to the ladder's multiple (what every factor covers)."""
    rows, cols = crop_slices(image.shape, plan.crop_multiple, anchor)
    return image[rows, cols], mask[rows, cols]


@factor_stage("data")
def stage_data(config: SweepConfig, plan: Plan, factor: str) -> dict:
    """Rescale every image and mask to this factor; semantic labels too (for the semantic task)."""
    stale = _marker(plan, factor, "data").exists()
    if is_done(plan, factor, "data"):
        return read_done(plan, factor, "data")
    if stale:  # the marker no longer vouches for these files: write them all again
        import shutil

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


def _load(plan: Plan, factor: str, names: list[str], what: str) -> list[np.ndarray]:
    from rescale4dl_bmz.files.dataset import read_image

    root = factor_dir(plan, factor) / what
    read = read_image if what == "images" else read_mask
    return [read(root / f"{n}.tif") for n in names]


@factor_stage("train")
def stage_train(config: SweepConfig, plan: Plan, factor: str) -> dict:
    """Train this factor's model on the training images (skipped when a complete model exists)."""
    stale = _marker(plan, factor, "train").exists()
    if is_done(plan, factor, "train"):
        return read_done(plan, factor, "train")
    from rescale4dl_bmz.models.train_process import train_in_subprocess

    f = parse_factor(factor)
    model_dir = factor_dir(plan, factor) / "model"
    semantic_given = config.task == "semantic" and config.label_source == "from-og"
    tc = config.train_config(factor, f.pixel_size(plan.pixel_size_um))
    if semantic_given:
        tc = tc.model_copy(update={"masks_are_semantic": True})
    root = factor_dir(plan, factor)
    images = [root / "images" / f"{n}.tif" for n in plan.train]
    masks = [root / ("labels" if semantic_given else "masks") / f"{n}.tif" for n in plan.train]
    t0 = time.perf_counter()
    if model_dir.exists() and (stale or not (model_dir / "cost.json").is_file()):
        import shutil  # a model its marker no longer vouches for, or an incomplete one: train again

        log.warning("[%s] train: %s is damaged or incomplete; training again", factor, model_dir)
        shutil.rmtree(model_dir)
    if not model_dir.exists():
        log.info("[%s] train: %d images", factor, len(images))
        train_in_subprocess(images, masks, tc, model_dir, root / "logs" / "train.log")
    cost = json.loads((model_dir / "cost.json").read_text())
    log.info("[%s] train: done in %.1f s", factor, time.perf_counter() - t0)
    return mark_done(plan, factor, "train", {"model": str(model_dir), **{k: cost.get(k) for k in
                                             ("wall_time_s", "steps", "epochs", "pixels_seen")}},
                     sorted(p for p in model_dir.rglob("*") if p.is_file()))


def load_predictor(config: SweepConfig, plan: Plan, factor: str):
    """This factor's trained model, or the one pretrained package for every factor."""
    if config.model is not None:
        from rescale4dl_bmz.bioimageio.pretrained import load_package

        return load_package(config.model)
    from rescale4dl_bmz.models import load_model

    return load_model(factor_dir(plan, factor) / "model")


@factor_stage("predict")
def stage_predict(config: SweepConfig, plan: Plan, factor: str) -> dict:
    """Predict the test images at this factor; records the inference time, measured warm."""
    if is_done(plan, factor, "predict"):
        return read_done(plan, factor, "predict")
    model = load_predictor(config, plan, factor)
    out = factor_dir(plan, factor) / "predictions"
    pixel = parse_factor(factor).pixel_size(plan.pixel_size_um)
    images = _load(plan, factor, plan.test, "images")
    t0 = time.perf_counter()
    for name, image in zip(plan.test, images):
        write_tiff(out / f"{name}.tif", model.predict(image), pixel)
    first_pass = time.perf_counter() - t0
    warm = warm_inference_seconds(model.predict, images[0])
    getattr(model, "close", lambda: None)()
    mean_px = float(np.mean([im.size for im in images]))
    per_image = warm / images[0].size * mean_px
    log.info("[%s] predict: %d images; %.3g s per image (warm)", factor, len(plan.test), per_image)
    return mark_done(plan, factor, "predict", {
        "predictions": str(out), "inference_s_per_image": per_image, "inference_s": per_image * len(images),
        "inference_first_pass_s": first_pass, "inference_pixels": int(sum(im.size for im in images)),
        "inference_method": f"median of {WARM_REPEATS} warm calls on {plan.test[0]} (after the first pass, which "
                            "includes tracing), scaled to the mean test image"},
        [out / f"{n}.tif" for n in plan.test])


WARM_REPEATS = 3


def warm_inference_seconds(predict, image: np.ndarray, repeats: int = WARM_REPEATS) -> float:
    """Median wall time of `predict(image)` over `repeats` calls, once the model is traced: the
    first call on a freshly loaded model includes tracing (128-299 ms against 2-11 ms warm)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(image)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


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


# ----------------------------------------------------------------------------- finish

@dataclass
class Outcome:
    """How one factor's chain of stages ended."""

    factor: str
    status: str = "running"       # done | failed | pruned
    stages: dict = field(default_factory=dict)
    failure: dict | None = None   # {"stage", "cause" (one line), "log" (path)}

    def fail(self, stage: str, exc: BaseException) -> None:
        self.status = "failed"
        self.failure = exc.as_dict() if isinstance(exc, FactorFailed) else {
            "stage": stage, "cause": one_line(exc), "log": None}


COST_COLUMNS = ("status", "failed_stage", "error", "log", "wall_time_s", "steps", "epochs", "pixels_seen",
                "inference_s", "inference_s_per_image", "vanished_objects")


def _cost_rows(plan: Plan, outcomes: list[Outcome]) -> list[dict]:
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
    for factor, reason in plan.pruned.items():
        rows.append({"factor": factor, "status": "pruned", "error": reason})
    return rows


def finish(config: SweepConfig, plan: Plan, outcomes: list[Outcome]) -> dict:
    """Gather the tables, choose the pixel size, draw the figures, export the model, write the report.

    `result["failed"]` maps each failed factor to {"stage", "cause", "log"}; `result["headline"]`
    opens with the failures, and no gain is claimed against a factor that did not finish."""
    import pandas as pd

    from rescale4dl_bmz.metrics.tables import summarize

    out = Path(plan.out)
    done = [o.factor for o in outcomes if o.status == "done"]
    failed = {o.factor: o.failure for o in outcomes if o.status == "failed"}
    result = {"n_done": len(done), "n_requested": len(outcomes), "failed": failed, "pruned": plan.pruned}
    costs = pd.DataFrame(_cost_rows(plan, outcomes), columns=["factor", *COST_COLUMNS])
    if not done:
        write_csv(out / "summary.csv", costs)
        from rescale4dl_bmz.sweep.report import failure_records, failure_sentence

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


def acquisition_plan(config: SweepConfig, plan: Plan, finished, selection):
    """Objects and bytes per field and per hour at each factor, for a camera the size of the images."""
    from rescale4dl_bmz.decide.plan import plan_acquisition, plan_areas, plan_density
    from rescale4dl_bmz.decide.select import select_object_areas

    factors = list(selection.table["factor"])
    areas = plan_areas(factors, select_object_areas(finished))
    camera = (plan.image_shape[1], plan.image_shape[0])
    return plan_acquisition(factors, {f: a for f, (a, _) in areas.items()}, camera, config.tau_s,
                            plan.pixel_size_um, selection.factor, density=plan_density(finished))


def draw_figures(config: SweepConfig, plan: Plan, summary, per_image, per_object, chosen: str) -> dict:
    """The paper-style figures of this sweep (paths by name); failed factors are marked, not dropped."""
    import pandas as pd

    from rescale4dl_bmz.sweep.report import plot_diameter_distributions, plot_examples, plot_iou_vs_coverage

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
    from rescale4dl_bmz.files.dataset import read_image

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
    from rescale4dl_bmz.bioimageio.export import export_package

    out = Path(plan.out)
    package = export_package(out, factor, out / "model.zip", variant="bioimageio", metadata=metadata)
    log.info("exported %s", package)
    return package


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
    from rescale4dl_bmz.metrics.tables import SAMPLED_GRID_NOTE
    from rescale4dl_bmz.decide.plan import plan_format
    from rescale4dl_bmz.sweep.report import (COST_COLUMNS, GRID_NOTE, QUALITY_COLUMNS, failure_records, failure_sentence, gains_lines,
                         glossary_markdown, human_table, markdown_table, recommendation_sentence, write_report)

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


def publish_artifacts(out: Path, result: dict) -> None:
    """The results table, the figures and the report as Prefect artifacts, rendered by the Prefect UI
    (images embedded as data URIs: the UI cannot reach files on this machine)."""
    import pandas as pd
    from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact

    from rescale4dl_bmz.decide.select import table_records
    from rescale4dl_bmz.sweep.report import COST_COLUMNS, QUALITY_COLUMNS, human_table, image_data_uri

    if (out / "summary.csv").exists():
        table = read_csv(out / "summary.csv")
        if "grid" in table:
            table = table[(table["grid"] == "native") | table["grid"].isna()]
        table = table.assign(scale=[parse_factor(f).scale for f in table["factor"]]).sort_values("scale")
        keep = list(dict.fromkeys(QUALITY_COLUMNS + COST_COLUMNS))
        create_table_artifact(key="sweep-summary", table=table_records(human_table(table, keep)),
                              description=result.get("headline", "sweep results (native grid)"))
    figures = out / "figures"
    for key, name, what in (("iou-vs-pixel-size", "iou_vs_coverage.png", "IoU against pixel size (native grid)"),
                            ("example-segmentations", "examples.png", "the same field at each pixel size"),
                            ("cell-diameters", "diameters.png", "annotated and predicted cell diameters")):
        if (figures / name).exists():
            create_image_artifact(image_url=image_data_uri(figures / name), key=key, description=what)
    if result.get("report"):
        md = Path(result["report"]).read_text(encoding="utf-8")
        md = re.sub(r"!\[([^\]]*)\]\(([^)]+\.png)\)",
                    lambda m: f"![{m.group(1)}]({image_data_uri(out / m.group(2))})"
                    if (out / m.group(2)).exists() else m.group(0), md)
        create_markdown_artifact(key="sweep-report", markdown=md, description="rescale4dl sweep report")
