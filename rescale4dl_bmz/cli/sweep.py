"""`rescale4dl sweep`: the whole experiment as a Prefect flow, from a YAML config or from flags."""

from __future__ import annotations

import argparse
from pathlib import Path

from rescale4dl_bmz.sweep.config import CRITERIA
from rescale4dl_bmz.cli.train import add_min_foreground_option


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("sweep", help="rescale, train, predict and evaluate per factor; choose the pixel size, "
                                     "export the model, write the report",
                       description="The whole pixel-size experiment on your annotated images: rescale them to every "
                                   "factor, train one network per factor, score its predictions, recommend the "
                                   "pixel size to acquire at, export that model (bioimage.io, Fiji/deepImageJ) and "
                                   "write OUT/report.html. Give a YAML config file (its keys are the long option "
                                   "names below, with underscores: images, masks, out, task, factors, "
                                   "pixel_size_um, training, ...; see the README), or the options; options override "
                                   "the file. Rerunning with the same --out resumes where the last run stopped.",
)
    p.add_argument("config", nargs="?", help="sweep config file (YAML); unknown keys are errors")
    add_sweep_options(p)
    return p


def add_sweep_options(p: argparse.ArgumentParser, data: bool = True, factors: str | None = None,
                      training: str | None = None) -> None:
    """The options that mirror `SweepConfig` (the demo reuses the non-data ones, with its own factors)."""
    if data:
        p.add_argument("--images", metavar="DIR", help="folder of 2D images (.tif, .tiff, .png)")
        p.add_argument("--masks", metavar="DIR", help="folder of instance masks (one integer label per cell, "
                                                      "0 = background), same file names as the images")
        p.add_argument("--task", choices=("semantic", "instance"),
                       help="semantic: cell interior and edge classes (U-Net); instance: one outline per cell "
                            "(StarDist)")
        p.add_argument("--pixel-size", type=float, dest="pixel_size_um", metavar="UM",
                       help="original pixel size in µm (default: read from the files' ImageJ/OME metadata; "
                            "unknown is allowed)")
        p.add_argument("--channel", type=int, metavar="N", help="channel to use in multichannel images (0 = first)")
        p.add_argument("--test-images", nargs="+", metavar="NAME",
                       help="images (file names without extension) kept aside to test on (default: a quarter of "
                            "the images, chosen at random with a fixed seed)")
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default for the demo: rescale4dl_demo)" if not data else "output folder")
    p.add_argument("--factors", nargs="+", metavar="F",
                   help="pixel sizes to try, as names or numbers, spaces or commas: 'og ds2 ds4', 'og,ds2,ds4' or "
                        "'1,2,4' (ds2 = pixels 2x coarser, up2 = 2x finer, og = original; default: "
                        f"{factors or 'up4 up2 og ds2 ds4 ds8 ds16'})")
    p.add_argument("--mode", choices=("aligned", "rescale4dl"),
                   help="rescaling: aligned (default; image and mask on exactly the same grid) or rescale4dl "
                        "(the original recipe, half a pixel off, for comparison)")
    p.add_argument("--epochs", type=int, help="training length in passes over the training patches (default: "
                                              f"{training or '1000, as the paper'})")
    p.add_argument("--steps", type=int, help="training length in optimiser steps (instead of --epochs)")
    p.add_argument("--base-filters", type=int, metavar="N",
                   help="network width: filters of the first layer (default: "
                        f"{'8, the demo' + chr(39) + 's tiny network' if training else '64 for the U-Net, 32 for StarDist'})")
    add_min_foreground_option(p)
    p.add_argument("--tau", type=float, dest="tau_s", metavar="S",
                   help="seconds to acquire one camera field, for the throughput (default 1)")
    p.add_argument("--criterion", choices=CRITERIA,
                   help="how to choose the pixel size (default coarsest-equivalent: the coarsest pixel size whose "
                        "IoU is not significantly worse than the best)")
    p.add_argument("--tolerance", type=float, metavar="IOU",
                   help="with coarsest-equivalent: the margin of practical equivalence, an IoU difference "
                        "(default 0.02): a factor is equivalent when the 95%% interval of its paired IoU "
                        "difference to the best stays above minus this margin")
    p.add_argument("--prune", action="store_true", default=None,
                   help="skip factors whose cells would be hopelessly small or large for the network "
                        "(see 'rescale4dl advise')")
    p.add_argument("--no-export", dest="export", action="store_false", default=None,
                   help="do not export the chosen model as a bioimage.io package")
    p.add_argument("--model", metavar="PACKAGE.zip",
                   help="a bioimage.io model package to test at every pixel size instead of training; --task "
                        "then defaults to what the package segments")
    p.add_argument("--task-runner", choices=("sequential", "dask"),
                   help="sequential (default: one factor at a time) or dask (factors in parallel)")
    p.add_argument("--dask-address", metavar="tcp://HOST:PORT",
                   help="an existing Dask scheduler (implies --task-runner dask)")
    p.add_argument("--dask-workers", type=int, metavar="N", help="workers of the local Dask cluster (default 2)")
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
    if getattr(args, "min_foreground", None) is not None:
        training["min_foreground_fraction"] = args.min_foreground
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
        from rescale4dl_bmz.bioimageio.pretrained import inspect_package

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
    from rescale4dl_bmz.sweep.flow import run_sweep

    summary = run_sweep(config, on_change)
    from rescale4dl_bmz.sweep.terminal import summary_block

    print(summary_block(summary, config.out))
    return summary
