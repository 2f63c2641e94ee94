"""The sweep's stages as plain functions: prepare, then per factor data -> train -> predict ->
evaluate, then finish (tables, selection, export, report). `pipeline.py` wires them into a
Prefect flow; here they stay testable without Prefect.

Every stage is idempotent: it writes its outputs atomically and a `<stage>.done.json` marker
last, and skips itself when the marker is there. So a rerun after a crash (even `kill -9` in the
middle of a training) redoes only what had not finished, and gives the same tables.

RUN_DIR layout: `config.yaml` (resolved), `run.json`, `advice.csv`, `<factor>/data/{images,masks,labels}`,
`<factor>/model/`, `<factor>/predictions/`, `<factor>/{per_image,per_object}.csv`, `per_image.csv`,
`per_object.csv`, `summary.csv`, `selection.json`, `figures/`, `report.md`, `report.html`, `model.zip`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .config import SweepConfig
from .dataset import (Pair, dataset_pixel_size, ensure_outside, inspect_dataset, read_mask, read_pair, write_json,
                      write_text, write_tiff)
from .errors import InputError
from .factors import Factor, coarsest_step, crop_slices, parse_factor

log = logging.getLogger("rescale4dl.sweep")

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
    items: list[dict]                   # name, image, mask, shape (original, uncropped)
    train: list[str]
    test: list[str]
    image_shape: list[int] = field(default_factory=list)  # cropped shape of the first image

    def pair(self, name: str) -> Pair:
        item = next(i for i in self.items if i["name"] == name)
        return Pair(name, Path(item["image"]), Path(item["mask"]))


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


def _check_patch_sizes(config: SweepConfig, factors: list[Factor], min_side: int) -> None:
    """Every factor's patch must fit its images and be divisible by 2^depth (before any work)."""
    from .models.patches import patch_size_for_factor

    for f in factors:
        tc = config.train_config(f.name).with_defaults()
        side = f.shape((min_side, min_side))[0]
        if tc.patch_size is not None:
            patch = tc.patch_size
            if patch > side:
                raise InputError(f"training.patch_size {patch} is larger than the images at {f.name} ({side} px)")
        else:
            patch = patch_size_for_factor(f.scale, tc.base_patch_size, tc.max_patch_size, side, tc.divisor)
        if patch < tc.divisor:
            raise InputError(f"images of {min_side} px are too small at {f.name} ({side} px) for a network that "
                             f"needs multiples of {tc.divisor} px; drop that factor or use bigger images")


def prepare(config: SweepConfig) -> Plan:
    """Validate data and config together, split, advise (and prune); write config.yaml and run.json."""
    ensure_outside(config.out, config.images, config.masks)
    factors = config.factor_list
    multiple = coarsest_step(factors)
    infos = inspect_dataset(config.images, config.masks, config.channel, config.pixel_size_um, min_side=multiple)
    pixel = dataset_pixel_size(infos)
    names = [i.name for i in infos]
    if config.model is None:
        empty = [str(i.mask) for i in infos if i.n_objects == 0]
        if len(empty) == len(infos):
            raise InputError(f"{config.masks}: every mask is empty; nothing to learn from")
    train, test = split_names(names, config)
    cropped = [min(s // multiple * multiple for s in i.shape) for i in infos]
    if config.model is None:
        _check_patch_sizes(config, factors, min(cropped))
    advice = advise_dataset(config, infos, factors, pixel)
    pruned = {a.factor: a.reason for a in advice if a.hopeless} if config.prune else {}
    run_factors = [f.name for f in factors if f.name not in pruned]
    if not run_factors:
        raise InputError("every factor was pruned as hopeless; set prune: false or choose other factors")
    rows, cols = crop_slices(infos[0].shape, multiple, config.crop)
    plan = Plan(out=str(Path(config.out).resolve()), task=config.task, factors=[f.name for f in factors],
                run_factors=run_factors, pruned=pruned, pixel_size_um=pixel, crop_multiple=multiple,
                items=[{"name": i.name, "image": str(i.image.resolve()), "mask": str(i.mask.resolve()),
                        "shape": list(i.shape)} for i in infos],
                train=train, test=test, image_shape=[rows.stop - rows.start, cols.stop - cols.start])
    out = Path(config.out)
    write_text(out / "config.yaml", config.to_yaml())
    write_json(out / "run.json", {"task": config.task, "pixel_size_um": pixel, "factors": plan.factors,
                                  "run_factors": run_factors, "pruned": pruned, "image_shape": plan.image_shape,
                                  "dataset": str(config.images), "train": train, "test": test,
                                  "model": str(config.model) if config.model else None})
    import pandas as pd

    from .dataset import atomic_path

    with atomic_path(out / "advice.csv") as tmp:
        pd.DataFrame([a.as_dict() for a in advice]).to_csv(tmp, index=False)
    log.info("%d images (%d train, %d test), pixel size %s, factors %s%s", len(infos), len(train), len(test),
             f"{pixel:.4g} µm" if pixel else "unknown", " ".join(run_factors),
             f"; pruned {', '.join(pruned)}" if pruned else "")
    return plan


def advise_dataset(config: SweepConfig, infos, factors: list[Factor], pixel: float | None):
    """The training-free advice for this dataset and network (diameters measured on the og masks)."""
    from .advise import advise, receptive_field
    from .metrics.morphology import object_morphology

    diam, width = [], []
    for info in infos:
        m = object_morphology(read_mask(info.mask))
        diam.extend(m["equivalent_diameter"])
        width.extend(m["width"])
    if config.task == "instance":
        arch = config.train_config("og").architecture if config.model is None else None
        rf = receptive_field("stardist", grid=getattr(arch, "grid", 2))
    else:
        arch = config.train_config("og").architecture if config.model is None else None
        rf = receptive_field("unet", depth=getattr(arch, "depth", 2))
    if not diam:
        raise InputError(f"{config.masks}: no objects in any mask")
    return advise(diam, width, factors, rf, pixel)


# ----------------------------------------------------------------------------- stage bookkeeping

def factor_dir(plan: Plan, factor: str) -> Path:
    return Path(plan.out) / factor


def is_done(plan: Plan, factor: str, stage: str) -> bool:
    return (factor_dir(plan, factor) / f"{stage}.done.json").exists()


def mark_done(plan: Plan, factor: str, stage: str, info: dict) -> dict:
    info = {"factor": factor, "stage": stage, **info}
    write_json(factor_dir(plan, factor) / f"{stage}.done.json", info)
    return info


def read_done(plan: Plan, factor: str, stage: str) -> dict:
    return json.loads((factor_dir(plan, factor) / f"{stage}.done.json").read_text())


# ----------------------------------------------------------------------------- per-factor stages

def crop_pair(image: np.ndarray, mask: np.ndarray, plan: Plan, anchor: str) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = crop_slices(image.shape, plan.crop_multiple, anchor)
    return image[rows, cols], mask[rows, cols]


def stage_data(config: SweepConfig, plan: Plan, factor: str) -> dict:
    """Rescale every image and mask to this factor; semantic labels too (for the semantic task)."""
    if is_done(plan, factor, "data"):
        return read_done(plan, factor, "data")
    from .labels import instance_to_semantic
    from .rescale import rescale_mask, rescale_pair

    f = parse_factor(factor)
    root = factor_dir(plan, factor) / "data"
    pixel = f.pixel_size(plan.pixel_size_um)
    n_objects = 0
    for item in plan.items:
        image, mask = crop_pair(*read_pair(plan.pair(item["name"]), config.channel), plan, config.crop)
        img, msk = rescale_pair(image, mask, f, config.mode)
        write_tiff(root / "images" / f"{item['name']}.tif", img, pixel)
        write_tiff(root / "masks" / f"{item['name']}.tif", msk, pixel)
        n_objects += int(np.count_nonzero(np.unique(msk)))
        if config.task == "semantic":
            if config.label_source == "from-og":
                sem = rescale_mask(instance_to_semantic(mask, config.label_style), f, config.mode)
            else:
                sem = instance_to_semantic(msk, config.label_style)
            write_tiff(root / "labels" / f"{item['name']}.tif", sem.astype(np.uint8), pixel)
    log.info("[%s] data: %d images rescaled (%d objects)", factor, len(plan.items), n_objects)
    return mark_done(plan, factor, "data", {"n_images": len(plan.items), "n_objects": n_objects,
                                            "pixel_size_um": pixel, "path": str(root)})


def _load(plan: Plan, factor: str, names: list[str], what: str) -> list[np.ndarray]:
    from .dataset import read_image

    root = factor_dir(plan, factor) / "data" / what
    read = read_image if what == "images" else read_mask
    return [read(root / f"{n}.tif") for n in names]


def stage_train(config: SweepConfig, plan: Plan, factor: str) -> dict:
    """Train this factor's model on the training images (skipped when a complete model exists)."""
    if is_done(plan, factor, "train"):
        return read_done(plan, factor, "train")
    from .models import train_model

    f = parse_factor(factor)
    model_dir = factor_dir(plan, factor) / "model"
    semantic_given = config.task == "semantic" and config.label_source == "from-og"
    tc = config.train_config(factor, f.pixel_size(plan.pixel_size_um))
    if semantic_given:
        tc = tc.model_copy(update={"masks_are_semantic": True})
    images = _load(plan, factor, plan.train, "images")
    masks = _load(plan, factor, plan.train, "labels" if semantic_given else "masks")
    t0 = time.perf_counter()
    if not (model_dir / "config.json").exists():
        log.info("[%s] train: %d images", factor, len(images))
        train_model(images, masks, tc, model_dir)
    cost = json.loads((model_dir / "cost.json").read_text())
    log.info("[%s] train: done in %.1f s", factor, time.perf_counter() - t0)
    return mark_done(plan, factor, "train", {"model": str(model_dir), **{k: cost.get(k) for k in
                                             ("wall_time_s", "steps", "epochs", "pixels_seen")}})


def stage_predict(config: SweepConfig, plan: Plan, factor: str) -> dict:
    """Predict the test images at this factor; records the inference time."""
    if is_done(plan, factor, "predict"):
        return read_done(plan, factor, "predict")
    from .models import load_model

    model = load_model(factor_dir(plan, factor) / "model")
    out = factor_dir(plan, factor) / "predictions"
    pixel = parse_factor(factor).pixel_size(plan.pixel_size_um)
    seconds, pixels = 0.0, 0
    for name, image in zip(plan.test, _load(plan, factor, plan.test, "images")):
        t0 = time.perf_counter()
        pred = model.predict(image)
        seconds += time.perf_counter() - t0
        pixels += image.size
        write_tiff(out / f"{name}.tif", pred, pixel)
    log.info("[%s] predict: %d images in %.2f s", factor, len(plan.test), seconds)
    return mark_done(plan, factor, "predict", {"predictions": str(out), "inference_s": seconds,
                                               "inference_pixels": pixels})
