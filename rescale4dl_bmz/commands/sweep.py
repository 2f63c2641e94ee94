"""`rescale4dl sweep`: the whole experiment as a Prefect flow, from a YAML config or from flags."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import CRITERIA


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("sweep", help="rescale, train, predict and evaluate per factor; select, export, report",
                       description="Run the pixel-size sweep as a Prefect flow. Give a YAML config (see "
                                   "rescale4dl_bmz.config.SweepConfig), or flags; flags override the file. "
                                   "A rerun with the same --out resumes where the last one stopped.")
    p.add_argument("config", nargs="?", help="sweep config (YAML); unknown keys are errors")
    add_sweep_options(p)
    return p


def add_sweep_options(p: argparse.ArgumentParser, data: bool = True) -> None:
    """The flags that mirror `SweepConfig` (the demo reuses the non-data ones)."""
    if data:
        p.add_argument("--images", help="folder of 2D images")
        p.add_argument("--masks", help="folder of instance masks, paired with the images by file name")
        p.add_argument("--task", choices=("semantic", "instance"), help="semantic (U-Net edge/inner) or instance (StarDist)")
        p.add_argument("--pixel-size", type=float, dest="pixel_size_um", help="original pixel size in µm")
        p.add_argument("--channel", type=int, help="channel of multichannel images")
        p.add_argument("--test-images", nargs="+", help="image names held out for evaluation")
    p.add_argument("--out", help="output folder")
    p.add_argument("--factors", nargs="+", help="factor names or numbers (default up4 up2 og ds2 ds4 ds8 ds16)")
    p.add_argument("--mode", choices=("aligned", "rescale4dl"), help="rescaling mode (default aligned)")
    p.add_argument("--epochs", type=int, help="training budget in epochs")
    p.add_argument("--steps", type=int, help="training budget in optimiser steps")
    p.add_argument("--base-filters", type=int, help="network width (paper: 64 U-Net, 32 StarDist)")
    p.add_argument("--tau", type=float, dest="tau_s", help="seconds to acquire one field (throughput)")
    p.add_argument("--criterion", choices=CRITERIA, help="how to choose the pixel size")
    p.add_argument("--tolerance", type=float, help="IoU tolerance for coarsest-equivalent")
    p.add_argument("--prune", action="store_true", default=None, help="skip factors advise calls hopeless")
    p.add_argument("--no-export", dest="export", action="store_false", default=None, help="skip the bioimage.io export")
    p.add_argument("--model", help="a bioimage.io package (.zip) to sweep instead of training; --task then "
                                   "defaults to what the package segments")
    p.add_argument("--task-runner", choices=("sequential", "dask"), help="run factors in parallel on Dask")
    p.add_argument("--dask-address", help="an existing Dask scheduler (implies --task-runner dask)")
    p.add_argument("--dask-workers", type=int, help="workers of the local Dask cluster (default 2)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--restart", dest="on_change", action="store_const", const="restart",
                       help="--out holds a run with another config or other inputs: delete it and start over")
    again.add_argument("--extend", dest="on_change", action="store_const", const="extend",
                       help="--out holds a run with fewer factors: add the new ones, keep the finished ones")


def config_fields(args) -> dict:
    """SweepConfig fields given on the command line (None = not given)."""
    fields = {k: getattr(args, k, None) for k in (
        "images", "masks", "task", "pixel_size_um", "channel", "test_images", "out", "factors", "mode", "tau_s",
        "criterion", "tolerance", "prune", "export", "model", "task_runner", "dask_address", "dask_workers")}
    if fields["dask_address"] and not fields["task_runner"]:
        fields["task_runner"] = "dask"
    training = {k: getattr(args, k) for k in ("epochs", "steps") if getattr(args, k, None) is not None}
    if getattr(args, "base_filters", None) is not None:
        training["architecture"] = {"base_filters": args.base_filters}
    if training:
        fields["training"] = training
    return {k: v for k, v in fields.items() if v is not None}


def merge_training(base: dict, extra: dict) -> dict:
    """Command-line training options on top of a config's (architecture merged key by key)."""
    merged = {**base, **{k: v for k, v in extra.items() if k != "architecture"}}
    if "architecture" in extra:
        merged["architecture"] = {**base.get("architecture", {}), **extra["architecture"]}
    if "epochs" in extra:
        merged.pop("steps", None)
    if "steps" in extra:
        merged.pop("epochs", None)
    return merged


def with_architecture_kind(training: dict, task: str | None) -> dict:
    """`--base-filters` names no network: the task decides (U-Net for semantic, StarDist for instance)."""
    arch = training.get("architecture")
    if arch is not None and "kind" not in arch:
        training = {**training, "architecture": {"kind": "stardist" if task == "instance" else "unet", **arch}}
    return training


def build_config(args, source_defaults: dict | None = None):
    """The `SweepConfig` from an optional YAML file, defaults, and the command-line flags."""
    from ..config import load_sweep_config, make_sweep_config
    from ..errors import InputError

    fields = config_fields(args)
    base = dict(source_defaults or {})
    source = "command line"
    if getattr(args, "config", None):
        base = load_sweep_config(args.config).model_dump()
        source = args.config
    if "training" in fields:
        fields["training"] = merge_training(base.get("training", {}), fields["training"])
    merged = {**base, **fields}
    if merged.get("model") and not merged.get("task"):
        from ..pretrained import inspect_package

        merged["task"] = inspect_package(merged["model"]).task  # the package says what it segments
    if "training" in merged:
        merged["training"] = with_architecture_kind(merged["training"], merged.get("task"))
    missing = [f"--{k}" for k in ("images", "masks", "task", "out") if merged.get(k) is None]
    if missing:
        raise InputError(f"give a config file, or {', '.join(missing)}")
    return make_sweep_config(source, **merged)


def run(args) -> int:
    config = build_config(args)
    summary = run_and_report(config, getattr(args, "on_change", None) or "refuse")
    return 0 if summary.get("n_done", 0) else 1


def run_and_report(config, on_change: str = "refuse") -> dict:
    """Run the flow and print the decision and where everything is."""
    from ..pipeline import run_sweep

    summary = run_sweep(config, on_change)
    out = Path(config.out)
    print()
    print(summary.get("headline", "sweep finished"))
    for key, label in (("report", "report"), ("package", "model package"), ("summary_csv", "results table")):
        if summary.get(key):
            print(f"  {label:14s} {summary[key]}")
    failed = summary.get("failed") or {}
    for factor, why in failed.items():
        print(f"  failed {factor}: {why}")
    print(f"  all outputs    {out.resolve()}")
    return summary
