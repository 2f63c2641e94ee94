"""`rescale4dl sweep`: the whole experiment as a Prefect flow, from a YAML config or from flags."""

from __future__ import annotations

import argparse

from rescale4dl_bmz.cli.model_flags import Flag, add_flags, given_fields
from rescale4dl_bmz.cli.train import min_foreground
from rescale4dl_bmz.factors import DEFAULT_FACTOR_NAMES
from rescale4dl_bmz.sweep.config import SweepConfig
from rescale4dl_bmz.vocabulary import NETWORK_FOR_TASK

# The SweepConfig fields offered as options, in --help order; names, types, choices and help come
# from the model (`cli.model_flags`). The data options are the sweep's own (the demo brings its data).
DATA_FLAGS = (
    Flag("images", metavar="DIR"), Flag("masks", metavar="DIR"), Flag("task"),
    Flag("pixel_size_um", "--pixel-size", metavar="UM"), Flag("channel", metavar="N"),
    Flag("test_images", metavar="NAME"),
)
RUN_FLAGS = (
    Flag("out", metavar="DIR"), Flag("factors", metavar="F"), Flag("mode"),
    Flag("training.epochs"), Flag("training.steps"), Flag("training.architecture.base_filters", metavar="N"),
    Flag("training.min_foreground_fraction", "--min-foreground", metavar="SHARE|auto", type=min_foreground),
    Flag("tau_s", "--tau", metavar="S"), Flag("criterion"), Flag("tolerance", metavar="IOU"), Flag("prune"),
    Flag("schedule"), Flag("halving_rounds", metavar="N"), Flag("halving_margin", metavar="SCORE"),
    Flag("export"), Flag("model", metavar="PACKAGE.zip"), Flag("task_runner"),
    Flag("dask_address", metavar="tcp://HOST:PORT"), Flag("dask_workers", metavar="N"),
)
# SweepConfig fields set in a config file (or Python) only; `training` has a few options above
FILE_ONLY_FIELDS = ("crop", "label_style", "label_source", "test_fraction", "seed", "training", "package")
# what the sweep's help says of defaults that the field descriptions leave out (the demo has its own)
SWEEP_DEFAULTS = {"factors": " ".join(DEFAULT_FACTOR_NAMES), "training.epochs": "1000, as the paper",
                  "training.architecture.base_filters": "64 for the U-Net, 32 for StarDist"}


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("sweep", help="rescale, train, predict and evaluate per factor; choose the pixel size, "
                                     "export the model, write the report",
                       description="The whole pixel-size experiment on your annotated images: rescale them to every "
                                   "factor, train one network per factor, score its predictions, recommend the "
                                   "pixel size to acquire at, export that model (bioimage.io, Fiji/deepImageJ) and "
                                   "write OUT/report.html. Give a YAML config file (its keys are the long option "
                                   "names below, with underscores: images, masks, out, task, factors, "
                                   "pixel_size_um, training, ...; see the README), or the options; options override "
                                   "the file. Rerunning with the same --out resumes where the last run stopped.")
    p.add_argument("config", nargs="?", help="sweep config file (YAML); unknown keys are errors")
    add_sweep_options(p)
    return p


def add_sweep_options(p: argparse.ArgumentParser, data: bool = True, defaults: dict | None = None) -> None:
    """The options that mirror `SweepConfig` (the demo reuses the non-data ones, with its own defaults:
    field path -> words for the help)."""
    add_flags(p, SweepConfig, (DATA_FLAGS if data else ()) + RUN_FLAGS, {**SWEEP_DEFAULTS, **(defaults or {})})
    again = p.add_mutually_exclusive_group()
    again.add_argument("--restart", dest="on_change", action="store_const", const="restart",
                       help="--out holds a run with another config or other inputs: delete it and start over")
    again.add_argument("--extend", dest="on_change", action="store_const", const="extend",
                       help="--out holds a run with fewer factors: add the new ones, keep the finished ones")


def config_fields(args) -> dict:
    """SweepConfig fields given on the command line (absent = not given)."""
    fields = given_fields(args, DATA_FLAGS + RUN_FLAGS)
    if fields.get("dask_address") and not fields.get("task_runner"):
        fields["task_runner"] = "dask"
    return fields


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
        training = {**training, "architecture": {"kind": NETWORK_FOR_TASK.get(task, "unet"), **arch}}
    return training


def build_config(args, source_defaults: dict | None = None):
    """The `SweepConfig` from an optional YAML file, defaults, and the command-line flags."""
    from rescale4dl_bmz.sweep.config import load_sweep_config, make_sweep_config
    from rescale4dl_bmz.errors import InputError

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
        from rescale4dl_bmz.bioimageio.pretrained.inspection import inspect_package

        merged["task"] = inspect_package(merged["model"]).task  # the package says what it segments
    if "training" in merged:
        merged["training"] = with_architecture_kind(merged["training"], merged.get("task"))
    missing = [f"--{k}" for k in ("images", "masks", "task", "out") if merged.get(k) is None]
    if missing:
        raise InputError(f"give a config file, or {', '.join(missing)}")
    return make_sweep_config(source, **merged)


def run(args) -> int:
    config = build_config(args)
    return exit_code(run_and_report(config, getattr(args, "on_change", None) or "refuse"))


def exit_code(summary: dict) -> int:
    """0 when every requested factor finished, 3 when any failed (the results are partial)."""
    from rescale4dl_bmz.errors import EXIT_OK, EXIT_PARTIAL

    return EXIT_PARTIAL if summary.get("failed") or not summary.get("n_done") else EXIT_OK


def run_and_report(config, on_change: str = "refuse") -> dict:
    """Run the flow and print the decision and where everything is."""
    import logging

    from rescale4dl_bmz.sweep.flow import run_sweep

    if config.model is not None and logging.getLogger().level > logging.DEBUG:
        from rescale4dl_bmz.process.logs import quiet_frameworks

        quiet_frameworks()  # a pretrained package runs here, on TensorFlow: mute its start-up lines
    summary = run_sweep(config, on_change)
    from rescale4dl_bmz.sweep.terminal import summary_block

    print(summary_block(summary, config.out))
    return summary
