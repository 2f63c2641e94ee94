"""`rescale4dl train IMAGES MASKS --task semantic|instance --out MODEL`: train one model."""

from __future__ import annotations

import argparse
from pathlib import Path

from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.models.config import TrainingOptions
from rescale4dl_bmz.vocabulary import LABEL_STYLES, NETWORK_FOR_TASK, TASKS

# CLI option -> TrainConfig field (architecture options are collected separately)
_FIELDS = {"factor": "factor", "pixel_size": "pixel_size_um", "patch_size": "patch_size",
           "batch_size": "batch_size", "learning_rate": "learning_rate", "epochs": "epochs", "steps": "steps",
           "steps_per_epoch": "steps_per_epoch", "validation_fraction": "validation_fraction",
           "min_foreground": "min_foreground_fraction", "early_stopping": "early_stopping_patience",
           "label_style": "label_style", "seed": "seed"}
_ARCH = {"depth": "depth", "base_filters": "base_filters", "n_rays": "n_rays", "grid": "grid"}


def min_foreground(text: str) -> float | str:
    """`--min-foreground` value: "auto" or a share in [0, 1]."""
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a share between 0 and 1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {text}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="train a U-Net (semantic) or StarDist (instance) model on one dataset",
        description="Train one model on IMAGES and their instance MASKS (paired by file name). The model "
                    "folder MODEL is written atomically: it appears only when training has finished.")
    p.add_argument("images", type=Path, help="folder of 2D images (.tif/.tiff/.png)")
    p.add_argument("masks", type=Path, help="folder of instance masks with the same file names")
    p.add_argument("--task", required=True, choices=TASKS,
                   help="semantic: multilabel U-Net (0 background / 1 inner / 2 edge); instance: StarDist 2D")
    p.add_argument("--out", required=True, type=Path, metavar="MODEL", help="model folder to create")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, help="training budget in epochs (default 1000, as the paper)")
    budget.add_argument("--steps", type=int, help="training budget in optimiser steps")
    p.add_argument("--steps-per-epoch", type=int, help="default: one pass over the training patches")
    p.add_argument("--config", type=Path, help="YAML/JSON file with training options (TrainConfig fields); "
                                               "command-line options override it")
    p.add_argument("--factor", help="name of the sampling these data are at (og, ds2, up2, ...): sets the patch size")
    p.add_argument("--pixel-size", type=float, metavar="UM", help="pixel size in µm (default: from the files)")
    p.add_argument("--channel", type=int, help="channel of multichannel images")
    p.add_argument("--masks-are-semantic", action="store_true",
                   help="MASKS already hold 0/1/2 labels (semantic task) instead of instance labels")
    p.add_argument("--label-style", choices=LABEL_STYLES, help="edge style used to derive 0/1/2 labels")
    p.add_argument("--depth", type=int, help="pooling steps (U-Net default 2, StarDist 3)")
    p.add_argument("--base-filters", type=int, help="filters of the first level (U-Net 64, StarDist 32)")
    p.add_argument("--n-rays", type=int, help="StarDist rays (default 32)")
    p.add_argument("--grid", type=int, help="StarDist output grid (default 2)")
    p.add_argument("--patch-size", type=int, help="patch side in px (default: 512/scale for the U-Net, "
                                                  "2048/scale for StarDist, fitted to the images)")
    p.add_argument("--batch-size", type=int, metavar="N",
                   help="patches per optimiser step (default 5 for the U-Net, 2 for StarDist)")
    p.add_argument("--learning-rate", type=float, metavar="LR",
                   help="optimiser step size (default 0.0001 for the U-Net, 0.0003 for StarDist)")
    p.add_argument("--validation-fraction", type=float, help="share of images (or patches) to validate on (0.1)")
    p.add_argument("--min-foreground", type=min_foreground, metavar="SHARE|auto",
                   help=TrainingOptions.model_fields["min_foreground_fraction"].description)
    p.add_argument("--early-stopping", type=int, metavar="EPOCHS",
                   help="stop after this many epochs without improvement")
    p.add_argument("--no-augment", action="store_true", help="turn augmentation off")
    p.add_argument("--seed", type=int, help="random seed for patches, augmentation and weights (default 0): "
                                           "the same seed gives the same model")
    p.add_argument("--overwrite", action="store_true", help="replace an existing MODEL folder")
    return p


def build_config(args: argparse.Namespace):
    """The TrainConfig from --config and the command-line options (InputError when invalid)."""
    from rescale4dl_bmz.models.config import config_from_dict

    data: dict = _read_options(args.config) if args.config else {}
    data["task"] = args.task
    for opt, key in _FIELDS.items():
        value = getattr(args, opt, None)
        if value is not None:
            data[key] = value
    if args.epochs is not None:
        data.pop("steps", None)
    if args.steps is not None:
        data.pop("epochs", None)
    if args.masks_are_semantic:
        data["masks_are_semantic"] = True
    if args.no_augment:
        data["augmentation"] = {**data.get("augmentation", {}), "enabled": False}
    arch = {k: getattr(args, opt) for opt, k in _ARCH.items() if getattr(args, opt, None) is not None}
    if arch or "architecture" in data:
        given = dict(data.get("architecture") or {})
        kind = given.get("kind", NETWORK_FOR_TASK[args.task])
        data["architecture"] = {**given, "kind": kind, **arch}
    return config_from_dict(data, "training options")


def _read_options(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"--config {path}: cannot be read ({exc})") from None
    except yaml.YAMLError as exc:
        raise InputError(f"--config {path}: not valid YAML/JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"--config {path}: expected a mapping of training options")
    return data


def run(args: argparse.Namespace) -> int:
    config = build_config(args)
    from rescale4dl_bmz.models.training import train_folder

    result = train_folder(args.images, args.masks, config, args.out, channel=args.channel, overwrite=args.overwrite)
    last = result.history[-1] if result.history else {}
    print(f"trained {result.task} model -> {result.folder}  ({result.cost['steps']} steps, "
          f"{result.cost['wall_time_s']:.1f} s, val_loss {last.get('val_loss', float('nan')):.4f}, "
          f"receptive field {result.receptive_field.get('analytic_px')} px)")
    return 0
