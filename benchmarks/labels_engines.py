"""Benchmark: edge/inner labels per image, Python engine vs ImageJ engine.

    .venv/bin/python benchmarks/labels_engines.py [--size 2048] [--repeat 5] [--json] [--check]

A synthetic size x size uint16 instance mask with about 4000 touching and separate disks
(radius 6-18 px, one per 32-px cell, jittered) goes through
`rescale4dl_bmz.data.labels.instance_to_semantic` (Python) and `ImageJ.instance_to_semantic` (our
macro in ImageJ 1.x under a private Xvfb, one JVM for all repeats, as a folder run uses it).
ImageJ's per-image time counts what the engine costs per image: the TIFF exchange, the macro and
the worker round trip; the JVM start is reported apart. Both results must be identical.
Each timing is the best of `--repeat` runs (the machine may be shared).
Target: Python at least 50x faster per image. `--check` exits with status 1 when it is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_RATIO = 50.0


def synthetic_mask(size: int = 2048, cell: int = 32, seed: int = 0) -> np.ndarray:
    """One jittered disk per cell, labels 1..n in random order; neighbours often touch."""
    rng = np.random.default_rng(seed)
    n = size // cell
    mask = np.zeros((n * cell, n * cell), np.uint16)
    ids = rng.permutation(n * n).astype(np.uint16) + 1
    yy, xx = np.mgrid[-cell:2 * cell, -cell:2 * cell] - cell // 2
    for i in range(n):
        for j in range(n):
            r = rng.uniform(6, 18)
            cy, cx = rng.uniform(-6, 6, 2)
            disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            y0, x0 = i * cell - cell, j * cell - cell
            ys, xs = np.nonzero(disk)
            ys, xs = ys + y0, xs + x0
            keep = (ys >= 0) & (ys < mask.shape[0]) & (xs >= 0) & (xs < mask.shape[1])
            ys, xs = ys[keep], xs[keep]
            free = mask[ys, xs] == 0  # earlier disks win where they overlap
            mask[ys[free], xs[free]] = ids[i * n + j]
    return mask


def _best(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="mask side in pixels (default 2048)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per engine; the best counts (default 5)")
    parser.add_argument("--style", choices=("deepbacs", "inner"), default="deepbacs")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when Python is not 50x faster")
    args = parser.parse_args(argv)

    from rescale4dl_bmz.imagej.bridge import ImageJ
    from rescale4dl_bmz.data.labels import instance_to_semantic

    mask = synthetic_mask(args.size)
    n_objects = int(np.count_nonzero(np.bincount(mask.ravel())[1:]))
    instance_to_semantic(mask, args.style)  # warm-up (first-touch allocations)
    python_s, python_out = _best(lambda: instance_to_semantic(mask, args.style), max(args.repeat, 20))

    t0 = time.perf_counter()
    with ImageJ() as ij:
        jvm_start_s = time.perf_counter() - t0
        ij.instance_to_semantic(mask, args.style)  # warm-up: class loading, JIT
        imagej_s, imagej_out = _best(lambda: ij.instance_to_semantic(mask, args.style), args.repeat)
        version = ij.version
    identical = bool(np.array_equal(python_out, imagej_out))
    ratio = imagej_s / python_s
    result = {"size": list(mask.shape), "dtype": str(mask.dtype), "n_objects": n_objects, "style": args.style,
              "python_ms": python_s * 1e3, "imagej_ms": imagej_s * 1e3, "imagej_start_s": jvm_start_s,
              "imagej_version": version, "ratio": ratio, "target_ratio": TARGET_RATIO, "identical": identical}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{mask.shape[0]}x{mask.shape[1]} {mask.dtype} mask, {n_objects} objects, style {args.style}")
        print(f"  python engine : {python_s * 1e3:8.2f} ms per image (best of {max(args.repeat, 20)})")
        print(f"  imagej engine : {imagej_s * 1e3:8.2f} ms per image (best of {args.repeat}; ImageJ {version})")
        print(f"  imagej start  : {jvm_start_s:8.2f} s (Xvfb + JVM, once per folder)")
        print(f"  ratio         : python {ratio:.0f}x faster (target >= {TARGET_RATIO:.0f}x); "
              f"results identical: {identical}")
    ok = identical and ratio >= TARGET_RATIO
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
