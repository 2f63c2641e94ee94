"""Advisor range vs measured best factor, on the shared real data (small sweeps, tiny budgets).

Runs a small semantic U-Net sweep on E. coli (ColiCoords, 0.08 µm) and C. elegans (BBBC010),
and a StarDist sweep on the S. aureus crop (cut into four quadrants: it is one image), then
prints, per data set, the advisor's recommended range (`advise`, before training), the best
factor measured on the native grid, the factor the selection chose, and whether the best (or
its neighbour) lies in the advisor's range; a markdown table at the end (for the README).

    python benchmarks/real_data_sweep.py [--steps 60] [--max-images 12] [--only ecoli,worms,saureus]
                                         [--factors og ds2 ds4]
    python benchmarks/real_data_sweep.py --paper    # the advisor against the paper's own tables

`--paper` trains nothing: it reads the published per-object tables in ../shared/data/reference
(the paper's widths per sampling: 2 x median EDT on the skeleton) and their mean IoU per
sampling, and prints the advisor's verdict for each sampling beside the measured IoU.

Tiny budgets (a few dozen steps, 8 base filters) make the IoUs noisy: they show the pipeline
and the order of magnitude, not the paper's numbers. The images are linked (not copied) into a
temporary folder, with the test images named, so reruns use the same split.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from rescale4dl_bmz.decide.advise import recommended_range
from rescale4dl_bmz.sweep.config import make_sweep_config
from rescale4dl_bmz.files.images import read_image, read_mask, read_pixel_size, write_tiff
from rescale4dl_bmz.factors import parse_factor
from rescale4dl_bmz.sweep.flow import run_sweep

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = {
    "ecoli": {"folder": "ecoli_colicoords", "task": "semantic", "pixel": 0.08,
              "factors": ["up2", "og", "ds2", "ds4", "ds8"], "n_test": 3},
    "worms": {"folder": "celegans_bbbc010", "task": "semantic", "pixel": None,
              "factors": ["up2", "og", "ds2", "ds4", "ds8"], "n_test": 3},
    "saureus": {"folder": "saureus_crop", "task": "instance", "pixel": None,
                "factors": ["og", "ds2", "ds4"], "n_test": 1},
}


UNDERTRAINED_IOU = 0.2  # below this best native IoU, the budget was too small to name a best factor


def link_subset(name: str, spec: dict, root: Path, max_images: int) -> tuple[Path, Path, list[str]]:
    """images/ and masks/ under root: links to the first `max_images` pairs (S. aureus: quadrants)."""
    images, masks = root / name / "images", root / name / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    source = DATA / spec["folder"]
    files = sorted((source / "images").glob("*.tif"))[:max_images]
    if name == "saureus":  # one 512x512 image: four 256x256 quadrants (three to train, one to test)
        image, mask = read_image(files[0]), read_mask(source / "masks" / files[0].name)
        pixel = read_pixel_size(files[0])
        h, w = image.shape[0] // 2, image.shape[1] // 2
        for k, (r, c) in enumerate(((0, 0), (0, w), (h, 0), (h, w)), start=1):
            if not (images / f"q{k}.tif").exists():
                write_tiff(images / f"q{k}.tif", np.ascontiguousarray(image[r:r + h, c:c + w]), pixel)
                write_tiff(masks / f"q{k}.tif", np.ascontiguousarray(mask[r:r + h, c:c + w]), pixel)
        names = [f"q{k}" for k in range(1, 5)]
    else:
        names = []
        for f in files:
            for sub, src in (("images", f), ("masks", source / "masks" / f.name)):
                dst = root / name / sub / f.name
                if not dst.exists():
                    dst.symlink_to(src)
            names.append(f.stem)
    return images, masks, names[-spec["n_test"]:]


def run_one(name: str, spec: dict, root: Path, steps: int, max_images: int, factors: list[str] | None = None) -> dict:
    images, masks, test = link_subset(name, spec, root, max_images)
    extra = {}
    if spec["task"] == "semantic":
        arch = {"kind": "unet", "depth": 2, "base_filters": 8}
        # sparse cells (E. coli: 0-8 per 512^2 image): smaller patches, any foreground
        extra = {"base_patch_size": 128, "min_foreground_fraction": 0.01}
    else:
        arch = {"kind": "stardist", "n_rays": 16, "grid": 2, "depth": 2, "base_filters": 8, "conv_after_unet": 16}
    config = make_sweep_config(images=images, masks=masks, out=root / name / "run", task=spec["task"],
                               factors=factors or spec["factors"], pixel_size_um=spec["pixel"], test_images=test,
                               export=False, training={"architecture": arch, "steps": steps,
                                                       "steps_per_epoch": max(1, steps // 2), "batch_size": 2,
                                                       "learning_rate": 1e-3, **extra})
    t0 = time.perf_counter()
    result = run_sweep(config)
    wall = time.perf_counter() - t0
    out = Path(config.out)
    advice = pd.read_csv(out / "advice.csv")
    recommended = [a for a in recommended_range(_advice_rows(advice))]
    summary = pd.read_csv(out / "summary.csv")
    if "grid" not in summary.columns:
        raise RuntimeError(f"no factor finished: {result.get('headline', '')}"[:200])
    native = summary[(summary["grid"] == "native") & (summary["status"] == "done")]
    best = str(native.loc[native["iou_mean"].idxmax(), "factor"]) if len(native) else None
    hit = best is not None and any(abs(np.log2(parse_factor(best).scale / parse_factor(r).scale)) <= 1
                                   for r in recommended)
    top = float(native["iou_mean"].max()) if len(native) else float("nan")
    if not top >= UNDERTRAINED_IOU:
        best = f"none (undertrained: best IoU {top:.2f})"
        hit = None
    return {"data": name, "task": spec["task"], "size_measure": str(advice["size_measure"].iloc[0]),
            "og_size_px": float(advice.loc[advice["factor"] == "og", "size_px"].iloc[0]),
            "advisor_range": " ".join(recommended), "measured_best": best, "chosen": result.get("chosen"),
            "best_or_neighbour_in_range": hit,
            "native_iou": {r.factor: round(float(r.iou_mean), 3) for r in native.itertuples()},
            "images": f"{len(list(images.iterdir()))} ({len(test)} test)", "steps": steps,
            "wall_s": round(wall, 1)}


def _advice_rows(advice: pd.DataFrame) -> list:
    from rescale4dl_bmz.decide.advise import FactorAdvice

    fields = FactorAdvice.__dataclass_fields__
    return [FactorAdvice(**{k: v for k, v in row.items() if k in fields}) for row in advice.to_dict("records")]


def _yes_no(value) -> str:
    return "n/a" if value is None else ("yes" if value else "NO")


def markdown(rows: list[dict]) -> str:
    head = ("| data | task | size (og) | advisor range | measured best | chosen | best or neighbour in range "
            "| native IoU per factor | images | steps | wall |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        if "error" in r:
            error = " ".join(str(r["error"]).split()).replace("|", "/")
            lines.append(f"| {r['data']} | failed: {error} |" + " |" * 9)
            continue
        ious = ", ".join(f"{k} {v:.2f}" for k, v in r["native_iou"].items())
        lines.append(f"| {r['data']} | {r['task']} | {r['size_measure'].replace('_', ' ')} {r['og_size_px']:.1f} px "
                     f"| {r['advisor_range']} | {r['measured_best']} | {r['chosen']} "
                     f"| {_yes_no(r['best_or_neighbour_in_range'])} | {ious} | {r['images']} "
                     f"| {r['steps']} | {r['wall_s']:.0f} s |")
    return "\n".join(lines)


PAPER = {  # data set: (per-object table for the widths, table of the IoU, IoU column filter, network)
    "DeepBacs E. coli, semantic": ("Deepbacs_instance_IoU_per_obj_stats.csv",
                                   "Deepbacs_SS_semantic_segmentation_stats.csv", "unet"),
    "Worms, semantic": ("Worm_SS_IoU_per_obj_stats.csv", "Worm_SS_semantic_segmentation_stats.csv", "unet"),
    "S. aureus, StarDist": ("Saureus_IoU_per_obj_stats.csv", "Saureus_summary_stats.csv", "stardist"),
}


def _sampling(name: str) -> str:
    name = str(name)
    if name == "OG":
        return "og"
    kind, f = name.split("_")
    return ("ds" if kind == "downsampling" else "up") + f


def paper_check() -> list[dict]:
    """The advisor's verdict per sampling of the paper's experiments, beside their mean IoU."""
    from rescale4dl_bmz.decide.advise import advise, receptive_field

    tables = DATA / "reference" / "tables"
    rows = []
    for name, (objects_csv, iou_csv, net) in PAPER.items():
        obj = pd.read_csv(tables / objects_csv)
        if "GT_Label" in obj and name.startswith("Worms"):
            obj = obj[obj["GT_Label"] == 1]  # the inner class (the worm tables hold one object per class)
        widths = obj.groupby("Grand_Parent_Folder")["GT_diameter_median"].median()
        iou = pd.read_csv(tables / iou_csv)
        if "GT_Label" in iou:  # semantic: the mean of inner and edge per image ("ALL")
            iou = iou.groupby(["Grand_Parent_Folder", "File_name"])["IoU"].mean().reset_index()
        mean_iou = iou.groupby("Grand_Parent_Folder")["IoU"].mean()
        rf = receptive_field(net)
        og_width = float(widths["OG"])
        factors = sorted((parse_factor(_sampling(k)) for k in widths.index), key=lambda f: f.scale)
        verdicts = {a.factor: a.verdict for a in advise([og_width], [og_width], factors, rf, measure="width")}
        best = _sampling(mean_iou.idxmax())
        for key in sorted(widths.index, key=lambda k: parse_factor(_sampling(k)).scale):
            f = _sampling(key)
            rows.append({"data": name, "factor": f, "width_px": round(float(widths[key]), 1),
                         "pct_width_per_pixel": round(100 / float(widths[key]), 1),
                         "mean_iou": round(float(mean_iou.get(key, np.nan)), 3), "best": f == best,
                         "advisor": verdicts[f]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="training steps per factor (default 60)")
    parser.add_argument("--max-images", type=int, default=12, help="images per data set (default 12)")
    parser.add_argument("--only", default=",".join(SETS), help="comma-separated data sets: " + ",".join(SETS))
    parser.add_argument("--factors", nargs="+", help="factors for every data set (default: each set's own ladder)")
    parser.add_argument("--out", help="keep the sweeps here (default: a temporary folder)")
    parser.add_argument("--paper", action="store_true", help="check the advisor on the paper's tables (no training)")
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"the shared data folder {DATA} is absent")
    if args.paper:
        table = pd.DataFrame(paper_check())
        print(table.to_markdown(index=False) if _has_tabulate() else table.to_string(index=False))
        return
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="real_data_sweep_"))
    rows = []
    for name in args.only.split(","):
        try:
            rows.append(run_one(name, SETS[name], root, args.steps, args.max_images, args.factors))
        except Exception as exc:  # one data set failing must not hide the others
            rows.append({"data": name, "error": f"{type(exc).__name__}: {exc}"[:200]})
        print(json.dumps(rows[-1]), flush=True)
    print(markdown(rows))


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
