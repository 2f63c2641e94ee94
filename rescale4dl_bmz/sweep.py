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

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import SweepConfig
from .dataset import (Pair, dataset_pixel_size, ensure_outside, inspect_dataset, read_mask, read_pair,
                      write_csv, write_json, write_text, write_tiff)
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
    items: list[dict]                   # name, image, mask, shape (original, uncropped), n_objects
    train: list[str]
    test: list[str]
    image_shape: list[int] = field(default_factory=list)  # cropped shape of the first image
    package: dict | None = None         # the pretrained package's description (PackageInfo.as_dict)

    def pair(self, name: str) -> Pair:
        item = next(i for i in self.items if i["name"] == name)
        return Pair(name, Path(item["image"]), Path(item["mask"]))

    def infos(self) -> list:
        """The validated items as `dataset.ItemInfo` records (pixel size = the dataset's)."""
        from .dataset import ItemInfo

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
    from .pretrained import inspect_package, load_package

    info = inspect_package(config.model)
    if info.task != config.task:
        raise InputError(f"{config.model}: the package does {info.task} segmentation "
                         f"({info.describe()}), but the sweep's task is {config.task}")
    load_package(config.model).close()
    return info


def _check_patch_sizes(config: SweepConfig, factors: list[Factor], min_side: int) -> None:
    """Every factor's patch must fit its images and be divisible by 2^depth (before any work)."""
    from .models.training import resolve_patch_size

    for f in factors:
        side = f.shape((min_side, min_side))[0]
        try:
            resolve_patch_size(config.train_config(f.name).with_defaults(), side)
        except InputError as exc:
            raise InputError(f"factor {f.name} (images {side} px): {exc}; drop that factor or use bigger "
                             "images") from None


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
                package=package.as_dict() if package else None)
    return plan, advice


def run_record(config: SweepConfig, plan: Plan):
    """The run folder's record of this sweep: config, a stamp of every input file, code version."""
    from .run_folder import make_record

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
    from .run_folder import open_record

    plan, advice = plan_sweep(config)
    open_record(config.out, run_record(config, plan), on_change)
    write_prepared(config, plan, advice)
    return plan


def _check_training_split(config: SweepConfig, infos, train: list[str], factors: list[Factor],
                          multiple: int) -> None:
    """Every factor's training images must give a training and a validation set, by the rule
    training applies (`models.patches.split_data`), checked on the masks rescaled in memory."""
    from .labels import instance_to_semantic
    from .models.patches import split_data
    from .models.training import resolve_patch_size
    from .rescale import rescale_mask

    items = [i for i in infos if i.name in set(train)]
    masks = []
    for info in items:
        rows, cols = crop_slices(info.shape, multiple, config.crop)
        masks.append(read_mask(info.mask)[rows, cols])
    for f in factors:
        cfg = config.train_config(f.name).with_defaults()
        labels = [rescale_mask(m, f, config.mode) for m in masks]
        if config.task == "semantic":
            labels = [instance_to_semantic(m, config.label_style) for m in labels]
        patch = resolve_patch_size(cfg, min(min(m.shape) for m in labels))
        try:
            split_data(labels, labels, patch, fraction=cfg.validation_fraction, seed=cfg.seed,
                       min_fg=cfg.min_foreground_fraction, whole_images=not cfg.is_unet,
                       names=[i.name for i in items])
        except InputError as exc:
            raise InputError(f"factor {f.name}: {exc} (training images: {', '.join(i.name for i in items)})") from None


def advise_dataset(config: SweepConfig, infos, factors: list[Factor], pixel: float | None):
    """The training-free advice for this dataset and network (diameters measured on the og masks)."""
    from .advise import advise, receptive_field
    from .metrics.morphology import object_morphology

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

def crop_pair(image: np.ndarray, mask: np.ndarray, plan: Plan, anchor: str) -> tuple[np.ndarray, np.ndarray]:
    """The pair cropped once to the ladder's multiple (what every factor covers)."""
    rows, cols = crop_slices(image.shape, plan.crop_multiple, anchor)
    return image[rows, cols], mask[rows, cols]


def stage_data(config: SweepConfig, plan: Plan, factor: str) -> dict:
    """Rescale every image and mask to this factor; semantic labels too (for the semantic task)."""
    stale = _marker(plan, factor, "data").exists()
    if is_done(plan, factor, "data"):
        return read_done(plan, factor, "data")
    if stale:  # the marker no longer vouches for these files: write them all again
        import shutil

        for sub in ("images", "masks", "labels"):
            shutil.rmtree(factor_dir(plan, factor) / sub, ignore_errors=True)
    from .labels import instance_to_semantic
    from .ladder import write_factor
    from .rescale import rescale_mask

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
                sem = rescale_mask(instance_to_semantic(og_mask, config.label_style), f, config.mode)
            else:
                sem = instance_to_semantic(read_mask(root / "masks" / f"{name}.tif"), config.label_style)
            write_tiff(root / "labels" / f"{name}.tif", sem.astype(np.uint8), pixel)
    n_objects, vanished = sum(r["objects"] for r in rows), sum(r["vanished"] for r in rows)
    log.info("[%s] data: %d images rescaled (%d objects, %d vanished)", factor, len(rows), n_objects, vanished)
    subs = ("images", "masks", "labels") if config.task == "semantic" else ("images", "masks")
    files = [root / sub / f"{item['name']}.tif" for sub in subs for item in plan.items]
    return mark_done(plan, factor, "data", {"n_images": len(rows), "n_objects": n_objects,
                                            "vanished_objects": vanished, "pixel_size_um": pixel, "path": str(root)},
                     files)


def _load(plan: Plan, factor: str, names: list[str], what: str) -> list[np.ndarray]:
    from .dataset import read_image

    root = factor_dir(plan, factor) / what
    read = read_image if what == "images" else read_mask
    return [read(root / f"{n}.tif") for n in names]


def stage_train(config: SweepConfig, plan: Plan, factor: str) -> dict:
    """Train this factor's model on the training images (skipped when a complete model exists)."""
    stale = _marker(plan, factor, "train").exists()
    if is_done(plan, factor, "train"):
        return read_done(plan, factor, "train")
    from .train_job import train_in_subprocess

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
        train_in_subprocess(images, masks, tc, model_dir)
    cost = json.loads((model_dir / "cost.json").read_text())
    log.info("[%s] train: done in %.1f s", factor, time.perf_counter() - t0)
    return mark_done(plan, factor, "train", {"model": str(model_dir), **{k: cost.get(k) for k in
                                             ("wall_time_s", "steps", "epochs", "pixels_seen")}},
                     sorted(p for p in model_dir.rglob("*") if p.is_file()))


def load_predictor(config: SweepConfig, plan: Plan, factor: str):
    """This factor's trained model, or the one pretrained package for every factor."""
    if config.model is not None:
        from .pretrained import load_package

        return load_package(config.model)
    from .models import load_model

    return load_model(factor_dir(plan, factor) / "model")


def stage_predict(config: SweepConfig, plan: Plan, factor: str) -> dict:
    """Predict the test images at this factor; records the inference time."""
    if is_done(plan, factor, "predict"):
        return read_done(plan, factor, "predict")
    model = load_predictor(config, plan, factor)
    out = factor_dir(plan, factor) / "predictions"
    pixel = parse_factor(factor).pixel_size(plan.pixel_size_um)
    seconds, pixels = 0.0, 0
    for name, image in zip(plan.test, _load(plan, factor, plan.test, "images")):
        t0 = time.perf_counter()
        pred = model.predict(image)
        seconds += time.perf_counter() - t0
        pixels += image.size
        write_tiff(out / f"{name}.tif", pred, pixel)
    getattr(model, "close", lambda: None)()
    log.info("[%s] predict: %d images in %.2f s", factor, len(plan.test), seconds)
    return mark_done(plan, factor, "predict", {"predictions": str(out), "inference_s": seconds,
                                               "inference_pixels": pixels}, [out / f"{n}.tif" for n in plan.test])


def stage_evaluate(config: SweepConfig, plan: Plan, factor: str) -> dict:
    """Score the test predictions on the factor's own grid and on the original one (both grids)."""
    if is_done(plan, factor, "evaluate"):
        return read_done(plan, factor, "evaluate")
    from .evaluation import evaluate_native, evaluate_pair, per_image_table, per_object_table
    from .labels import instance_to_semantic

    f = parse_factor(factor)
    root = factor_dir(plan, factor)
    objects, images = [], []
    for name in plan.test:
        pred = read_mask(root / "predictions" / f"{name}.tif")
        mask = read_mask(root / "masks" / f"{name}.tif")
        _, og_mask = crop_pair(*read_pair(plan.pair(name), config.channel), plan, config.crop)
        common = dict(pixel_size_um=plan.pixel_size_um, fov_area_px=float(og_mask.size))
        if config.task == "semantic":
            gt = read_mask(root / "labels" / f"{name}.tif")
            og_gt = instance_to_semantic(og_mask, config.label_style)
            sampled = evaluate_pair(gt, pred, "semantic", name, f, "sampled", gt_instances=mask, **common)
            native = evaluate_native(og_gt, pred, "semantic", name, f, gt_instances=og_mask, **common)
        else:
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
    error: str | None = None
    stages: dict = field(default_factory=dict)


COST_COLUMNS = ("status", "error", "wall_time_s", "steps", "epochs", "pixels_seen", "inference_s",
                "inference_s_per_image", "vanished_objects")


def _cost_rows(plan: Plan, outcomes: list[Outcome]) -> list[dict]:
    rows = []
    for o in outcomes:
        train, pred = o.stages.get("train", {}), o.stages.get("predict", {})
        n_test = max(len(plan.test), 1)
        rows.append({"factor": o.factor, "status": o.status, "error": o.error,
                     "wall_time_s": train.get("wall_time_s"), "steps": train.get("steps"),
                     "epochs": train.get("epochs"), "pixels_seen": train.get("pixels_seen"),
                     "inference_s": pred.get("inference_s"),
                     "inference_s_per_image": (pred["inference_s"] / n_test) if "inference_s" in pred else None,
                     "vanished_objects": o.stages.get("data", {}).get("vanished_objects")})
    for factor, reason in plan.pruned.items():
        rows.append({"factor": factor, "status": "pruned", "error": reason})
    return rows


def finish(config: SweepConfig, plan: Plan, outcomes: list[Outcome]) -> dict:
    """Gather the tables, choose the pixel size, draw the figures, export the model, write the report."""
    import pandas as pd

    from .evaluation import summarize

    out = Path(plan.out)
    done = [o.factor for o in outcomes if o.status == "done"]
    failed = {o.factor: o.error for o in outcomes if o.status == "failed"}
    result = {"n_done": len(done), "failed": failed, "pruned": plan.pruned}
    costs = pd.DataFrame(_cost_rows(plan, outcomes), columns=["factor", *COST_COLUMNS])
    if not done:
        write_csv(out / "summary.csv", costs)
        result["headline"] = "no factor finished: " + "; ".join(f"{k}: {v}" for k, v in failed.items())
        return result
    per_image = pd.concat([pd.read_csv(out / f / "per_image.csv") for f in done], ignore_index=True)
    per_object = pd.concat([pd.read_csv(out / f / "per_object.csv") for f in done], ignore_index=True)
    write_csv(out / "per_image.csv", per_image)
    write_csv(out / "per_object.csv", per_object)
    summary = summarize(per_image, per_object, tau=config.tau_s)
    summary = summary.merge(costs, on="factor", how="outer")
    summary["scale"] = [parse_factor(f).scale for f in summary["factor"]]
    summary = summary.sort_values(["grid", "scale"], na_position="last", kind="stable")
    write_csv(out / "summary.csv", summary)
    result["summary_csv"] = str(out / "summary.csv")

    from .recommend import select_factor

    finished = summary[summary["status"] == "done"]
    selection = select_factor(finished, per_image, config.criterion, config.tolerance,
                              pixel_size_um=plan.pixel_size_um)
    write_json(out / "selection.json", selection.to_dict())
    result.update(chosen=selection.factor, pixel_size=selection.pixel_size_text, reason=selection.reason)
    acquisition = acquisition_plan(config, plan, finished, selection)
    write_csv(out / "plan.csv", acquisition)
    figures = draw_figures(config, plan, summary, per_image, per_object, selection.factor)
    if config.export and config.model is None:
        result["package"] = str(export_chosen(plan, selection.factor))
    result["report"] = str(write_sweep_report(config, plan, summary, selection, figures, result, acquisition))
    result["headline"] = (f"recommended pixel size: {selection.pixel_size_text} (factor {selection.factor}); "
                          f"{selection.reason}")
    if plan.package:
        result["headline"] += " " + package_note(plan)
    return result


def acquisition_plan(config: SweepConfig, plan: Plan, finished, selection):
    """Objects and bytes per field and per hour at each factor, for a camera the size of the images."""
    from .planning import plan_acquisition, plan_areas
    from .recommend import select_object_areas

    factors = list(selection.table["factor"])
    areas = plan_areas(factors, select_object_areas(finished))
    camera = (plan.image_shape[1], plan.image_shape[0])
    return plan_acquisition(factors, {f: a for f, (a, _) in areas.items()}, camera, config.tau_s,
                            plan.pixel_size_um, selection.factor)


def draw_figures(config: SweepConfig, plan: Plan, summary, per_image, per_object, chosen: str) -> dict:
    """The paper-style figures of this sweep (paths by name)."""
    import pandas as pd

    from .report import plot_diameter_distributions, plot_examples, plot_iou_vs_coverage

    fig = Path(plan.out) / "figures"
    done = summary[summary["status"] == "done"]
    paths = {}
    for grid in ("native", "sampled"):
        name = "iou_vs_coverage.png" if grid == "native" else "iou_vs_coverage_sampled.png"
        paths[f"iou_{grid}"] = plot_iou_vs_coverage(per_image, done, fig / name, grid=grid, chosen=chosen,
                                                    title=f"{config.task} segmentation, {grid} grid")
    gt = per_object[per_object["source"] == "gt"].rename(columns={"diameter": "gt_diameter"})
    pr = per_object[per_object["source"] == "pred"].rename(columns={"diameter": "pred_diameter"})
    both = pd.concat([gt, pr], ignore_index=True)
    paths["diameters"] = plot_diameter_distributions(both, fig / "diameters.png", "gt_diameter", "pred_diameter")
    paths["examples"] = plot_examples(example_crops(config, plan, list(done.drop_duplicates("factor")["factor"])),
                                      fig / "examples.png")
    return paths


def example_crops(config: SweepConfig, plan: Plan, factors: list[str], field_px: int = 128) -> list:
    """(factor, image, ground truth, prediction) crops of the same field (first test image)."""
    from .dataset import read_image

    name = plan.test[0]
    crops = []
    for factor in sorted(factors, key=lambda n: parse_factor(n).scale):
        f, root = parse_factor(factor), factor_dir(plan, factor)
        side = max(int(round(min(field_px, *plan.image_shape) / f.scale)), 4)
        gt_dir = "labels" if config.task == "semantic" else "masks"
        arrays = [read_image(root / "images" / f"{name}.tif"), read_mask(root / gt_dir / f"{name}.tif"),
                  read_mask(root / "predictions" / f"{name}.tif")]
        crops.append((factor, *(a[:side, :side] for a in arrays)))
    return crops


def export_chosen(plan: Plan, factor: str) -> Path:
    """The chosen model as bioimage.io packages: `model.zip` (pixel size on the axes) and
    `model_deepimagej.zip` (unit axes, pixel size in config.deepimagej); both pass bioimageio's test."""
    from .export import export_package

    out = Path(plan.out)
    package = export_package(out, factor, out / "model.zip", variant="bioimageio")
    export_package(out, factor, out / "model_deepimagej.zip", variant="deepimagej")
    log.info("exported %s and %s", package, out / "model_deepimagej.zip")
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
    """report.md / report.html: decision, table, figures, acquisition plan, costs, failures."""
    from .planning import plan_format
    from .report import markdown_table, write_report

    out = Path(plan.out)
    rel = {k: Path(v).relative_to(out).as_posix() for k, v in figures.items()}
    native = summary[(summary["grid"] == "native") | summary["grid"].isna()]
    cols = [c for c in ("factor", "pixel_size_um", "status", "iou_mean", "iou_ci_low", "iou_ci_high", "p_vs_best",
                        "gt_mean_diameter_px", "pct_diameter_per_pixel", "throughput", "bytes_per_object",
                        "wall_time_s", "steps", "inference_s_per_image") if c in native.columns]
    size = f"{plan.pixel_size_um:.4g} µm" if plan.pixel_size_um else "unknown (results in multiples of it)"
    gains = "".join(f"- {k.replace('_', ' ')}: {v['ratio']:.3g}x vs og ({v.get('basis', '')})\n"
                    for k, v in selection.gains.items() if isinstance(v, dict) and v.get("ratio") is not None)
    sections = [
        ("Recommendation", f"**Acquire at {selection.pixel_size_text}** (factor `{selection.factor}`, "
                           f"criterion {selection.criterion}).\n\n{selection.reason}\n\n" + gains),
        ("Data", f"{len(plan.items)} images ({len(plan.train)} for training, {len(plan.test)} evaluated: "
                 f"{', '.join(plan.test)}), task {config.task}, original pixel size {size}, "
                 f"mode {config.mode}, factors {' '.join(plan.factors)}."
                 + (f" Pruned before training: {', '.join(f'{k} ({v})' for k, v in plan.pruned.items())}."
                    if plan.pruned else "")),
        ("IoU against sampling", f"![IoU vs % diameter per pixel]({rel['iou_native']})\n\n"
                                 "Native grid: each prediction brought back to the original pixels and compared "
                                 "with the original ground truth (factors compete on equal terms). "
                                 f"The sampled-grid view (as the paper reported): ![sampled]({rel['iou_sampled']})"),
        ("Sweep table (native grid)", markdown_table(native[cols])),
        ("Object diameters", f"![diameters]({rel['diameters']})"),
        ("Examples", f"![examples]({rel['examples']})"),
        ("Acquisition plan", f"A camera field the size of these images ({plan.image_shape[1]}x{plan.image_shape[0]} "
                             f"px), one field every {config.tau_s:g} s (`rescale4dl plan` takes your camera):\n\n"
                             + plan_format(acquisition, markdown=True)),
    ]
    if plan.package:
        sections.insert(1, ("Pretrained package", f"`{config.model}`: {plan.package.get('name')}, "
                                                  f"{plan.package.get('task')} output. {package_note(plan)}"))
    if result.get("failed"):
        sections.append(("Failed factors", "\n".join(f"- {k}: {v}" for k, v in result["failed"].items())))
    if result.get("package"):
        sections.append(("Model package", f"`{Path(result['package']).name}` (bioimage.io spec 0.5, pixel size on "
                                          "the axes) and `model_deepimagej.zip` (for deepImageJ in Fiji); bring "
                                          f"images to {selection.pixel_size_text} first with "
                                          "`fiji_macros/resample_to_model_pixel_size.ijm`."))
    md, _ = write_report(out, sections)
    return md


def publish_artifacts(out: Path, result: dict) -> None:
    """The results table and the report as Prefect artifacts (visible in the Prefect UI)."""
    import pandas as pd
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from .recommend import table_records

    if (out / "summary.csv").exists():
        table = pd.read_csv(out / "summary.csv")
        create_table_artifact(key="sweep-summary", table=table_records(table),
                              description=result.get("headline", "sweep summary"))
    if result.get("report"):
        create_markdown_artifact(key="sweep-report", markdown=Path(result["report"]).read_text(encoding="utf-8"),
                                 description="rescale4dl sweep report")
