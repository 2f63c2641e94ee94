"""Prediction throughput of one network at og, ds2 and ds4 of one image.

The same network (a trained model folder, or an untrained paper U-Net / StarDist when none is
given) predicts the same field of view sampled at each factor. Printed: megapixels/s, objects/s
(objects of the ground-truth mask in that field) and, as ratios to og, the speed-up per field of
view. Physics says a 2x coarser pixel should be close to 4x faster per field of view (4x fewer
pixels); fixed per-call costs pull small images below that.

    python benchmarks/inference.py                       # untrained paper U-Net, S. aureus image
    python benchmarks/inference.py --model MODEL         # a trained model folder (raw image in)
    python benchmarks/inference.py --task instance       # untrained StarDist (prob/dist maps only)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rescale4dl_bmz.files.images import read_image, read_mask  # noqa: E402
from rescale4dl_bmz.factors import coarsest_step, crop_slices, parse_factors  # noqa: E402
from rescale4dl_bmz.data.rescale import rescale_image, rescale_mask  # noqa: E402
from rescale4dl_bmz.vocabulary import TASKS  # noqa: E402

DEFAULT_IMAGE = ROOT.parent / "shared" / "data" / "saureus_crop" / "images" / "1.tif"


def make_predictor(model_dir: Path | None, task: str, tile: int):
    """A function raw image -> prediction, and a description of the network."""
    if model_dir is not None:
        from rescale4dl_bmz.models import load_model

        model = load_model(model_dir)
        return (lambda image: model.predict(image, tile_size=tile)), f"{model.task} model {model_dir}"
    from rescale4dl_bmz.models.normalize import percentile_normalize
    from rescale4dl_bmz.models.prediction import predict_tiled

    if task == "semantic":
        from rescale4dl_bmz.models.unet import build_unet

        net = build_unet()  # the paper's U-Net: depth 2, 64 base filters
        return (lambda image: predict_tiled(net.predict_on_batch, percentile_normalize(image), 4, tile, 56)
                ), "untrained U-Net (depth 2, 64 filters)"
    from stardist.models import StarDist2D

    from rescale4dl_bmz.models.config import make_config
    from rescale4dl_bmz.models.stardist_model import stardist_config

    cfg = make_config("instance").with_defaults()
    sd = StarDist2D(stardist_config(cfg, 256, 1, 1), basedir=None)
    return (lambda image: predict_tiled(lambda x: np.concatenate(sd.keras_model.predict_on_batch(x), -1),
                                        percentile_normalize(image), 16, tile, 208)
            ), "untrained StarDist 2D (depth 3, 32 filters, grid 2; network only)"


def benchmark(predict, image: np.ndarray, mask: np.ndarray | None, factors, repeats: int = 3) -> list[dict]:
    """Median prediction time per factor, with throughput in megapixels/s and objects/s."""
    rows = []
    for f in factors:
        im = rescale_image(image, f)
        n_obj = int(np.count_nonzero(np.unique(rescale_mask(mask, f)))) if mask is not None else None
        predict(im)  # warm-up: graph tracing, memory
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            predict(im)
            times.append(time.perf_counter() - t0)
        t = statistics.median(times)
        rows.append({"factor": f.name, "shape": im.shape, "seconds": t, "mpx_per_s": im.size / t / 1e6,
                     "objects": n_obj, "objects_per_s": (n_obj / t) if n_obj is not None else None})
    base = rows[0]
    for r in rows:
        r["speedup_per_fov"] = base["seconds"] / r["seconds"]
        r["mpx_per_s_ratio"] = r["mpx_per_s"] / base["mpx_per_s"]
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, help="trained model folder (default: an untrained network)")
    p.add_argument("--task", choices=TASKS, default="semantic")
    p.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    p.add_argument("--mask", type=Path, help="instance mask for object counts (default: ../masks/<same name>)")
    p.add_argument("--factors", default="og,ds2,ds4")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tile", type=int, default=1024)
    args = p.parse_args(argv)

    factors = parse_factors(args.factors)
    image = read_image(args.image)
    mask_path = args.mask or args.image.parent.parent / "masks" / args.image.name
    mask = read_mask(mask_path) if mask_path.exists() else None
    rows_, cols_ = crop_slices(image.shape, coarsest_step(factors))
    image = image[rows_, cols_]
    mask = mask[rows_, cols_] if mask is not None else None
    predict, what = make_predictor(args.model, args.task, args.tile)
    rows = benchmark(predict, image, mask, factors, args.repeats)
    print(f"{what}; image {args.image.name} cropped to {image.shape}; median of {args.repeats} run(s)")
    print(f"{'factor':>6} {'shape':>12} {'time s':>8} {'Mpx/s':>7} {'obj/s':>8} {'x og per FOV':>13} "
          f"{'Mpx/s vs og':>12}")
    for r in rows:
        obj = f"{r['objects_per_s']:.0f}" if r["objects_per_s"] is not None else "-"
        print(f"{r['factor']:>6} {str(r['shape']):>12} {r['seconds']:8.3f} {r['mpx_per_s']:7.2f} {obj:>8} "
              f"{r['speedup_per_fov']:13.2f} {r['mpx_per_s_ratio']:12.2f}")
    print("expected from the pixel count alone: x4 per 2x step (og 1, ds2 4, ds4 16)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
