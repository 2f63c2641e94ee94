"""Before the first factor: every check on data and config together (split, patch sizes, the
training split of every factor, a pretrained package's task), the advice (and pruning), then the
run record, config.yaml, run.json and advice.csv. Nothing is written until every check passed."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.factors import Factor, coarsest_step, crop_slices
from rescale4dl_bmz.files.dataset import dataset_pixel_size, inspect_dataset
from rescale4dl_bmz.files.folders import ensure_outside
from rescale4dl_bmz.files.images import read_mask
from rescale4dl_bmz.files.text_files import write_csv, write_json, write_text
from rescale4dl_bmz.sweep.config import SweepConfig
from rescale4dl_bmz.sweep.factor_labels import factor_labels
from rescale4dl_bmz.sweep.plan import Plan

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- checks

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


def check_pretrained_package(config: SweepConfig):
    """Validate the bioimage.io package (and load its weights once) before any rescaling."""
    from rescale4dl_bmz.bioimageio.pretrained.inspection import inspect_package
    from rescale4dl_bmz.bioimageio.pretrained.runner import load_package

    info = inspect_package(config.model)
    if info.task != config.task:
        raise InputError(f"{config.model}: the package does {info.task} segmentation "
                         f"({info.describe()}), but the sweep's task is {config.task}")
    load_package(config.model).close()
    return info


def check_patch_sizes(config: SweepConfig, factors: list[Factor], min_side: int) -> None:
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


def check_training_split(config: SweepConfig, infos, train: list[str], factors: list[Factor],
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
        labels = [factor_labels(config, m, f) for m in masks]
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


# ----------------------------------------------------------------------------- plan and run folder

def plan_sweep(config: SweepConfig) -> tuple[Plan, list]:
    """Every check on data and config together, before a single byte is written: (plan, advice)."""
    ensure_outside(config.out, config.images, config.masks, *([config.model] if config.model else []))
    package = check_pretrained_package(config) if config.model is not None else None
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
        check_patch_sizes(config, factors, min(cropped))
        check_training_split(config, infos, train, factors, multiple)
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

