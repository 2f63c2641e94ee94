"""`rescale4dl demo`: the whole sweep on the embedded nuclei sample (no download, no server)."""

from __future__ import annotations

import argparse
from pathlib import Path

DEMO_FACTORS = ["og", "ds2", "ds4", "ds8"]
PRETRAINED_FACTORS = ["up2", "og", "ds2", "ds4", "ds8"]
# Tiny budgets so the demo finishes in minutes on 2 CPU cores (real sweeps train far longer).
DEMO_TRAINING = {
    "semantic": {"architecture": {"kind": "unet", "depth": 2, "base_filters": 8}, "steps": 40,
                 "steps_per_epoch": 20, "batch_size": 2, "learning_rate": 1e-3},
    "instance": {"architecture": {"kind": "stardist", "base_filters": 8}, "steps": 40,
                 "steps_per_epoch": 20, "batch_size": 2, "learning_rate": 1e-3},
}


def add_parser(sub) -> argparse.ArgumentParser:
    from rescale4dl_bmz.cli.sweep import add_sweep_options
    from rescale4dl_bmz.vocabulary import TASKS

    p = sub.add_parser("demo", help="the whole sweep on the embedded nuclei sample (no download)",
                       description="Cut stardist's embedded 512x512 nuclei image (125 annotated nuclei) into four "
                                   "quadrants, sweep factors og ds2 ds4 ds8 with tiny training budgets, choose the "
                                   "pixel size and export the model. Runs offline with Prefect's temporary API.")
    p.add_argument("--task", choices=TASKS, default="semantic",
                   help="semantic (default): cell interior and edge classes (U-Net); instance: one outline per "
                        "cell (StarDist)")
    p.add_argument("--pretrained", action="store_true",
                   help="then sweep the exported model package over up2..ds8 without training "
                        "(the study's question for a model you already have); results in OUT/pretrained")
    add_sweep_options(p, data=False, defaults={
        "out": "rescale4dl_demo",
        "factors": f"{' '.join(DEMO_FACTORS)} ({' '.join(PRETRAINED_FACTORS)} with --pretrained)",
        "training.epochs": "40 steps, the demo's tiny budget",
        "training.architecture.base_filters": "8, the demo's tiny network"})
    return p


def run(args) -> int:
    from rescale4dl_bmz.files.demo_data import write_demo_dataset
    from rescale4dl_bmz.cli.sweep import build_config, exit_code, run_and_report

    out = Path(args.out or "rescale4dl_demo")
    args.out = str(out)
    images, masks = write_demo_dataset(out.parent / f"{out.name}_data")  # inputs never lie inside the output
    defaults = {"images": str(images), "masks": str(masks), "task": args.task, "out": str(out),
                "factors": DEMO_FACTORS, "test_images": ["q4"], "training": DEMO_TRAINING[args.task]}
    package = out / "model.zip"
    if not (args.pretrained and package.exists()):
        code = exit_code(run_and_report(build_config(args, defaults), args.on_change or "refuse"))
        if code or not args.pretrained:
            return code
    args.out = str(out / "pretrained")
    args.factors = args.factors or PRETRAINED_FACTORS
    pretrained = {**defaults, "out": args.out, "model": str(package), "test_images": None, "export": False}
    return exit_code(run_and_report(build_config(args, pretrained), args.on_change or "refuse"))

