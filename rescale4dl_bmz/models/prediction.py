"""Prediction of images of any size.

U-Net: the image is padded to a multiple of 2^depth; if it is larger than a tile, overlapping
tiles (starts on the pooling grid, so every tile sees the same pooling phases as the whole
image would) are predicted and blended: on a side with a neighbour, the outer half of the
overlap gets no weight (those outputs lack context), the inner half ramps up linearly.
StarDist: `predict_instances` with its own tiling.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np

from rescale4dl_bmz.errors import InputError


def tile_starts(n: int, tile: int, step: int) -> list[int]:
    """Starts of tiles of size `tile` covering [0, n) with at most `step` between them.

    The one tile-position rule of both tilers: `predict_tiled` here (the last tile flush with
    the end) and the bioimage.io package runner (`plan_axis` pads the axis so that tiles
    exactly `step` apart end flush).
    """
    if n <= tile:
        return [0]
    starts = list(range(0, n - tile, step))
    return starts + [n - tile]


def _window(size: int, overlap: int, left: bool, right: bool) -> np.ndarray:
    """1D blending weights: 0 on the outer overlap/2 px facing a neighbour, then a linear ramp.

    With `overlap` >= twice the widest one-sided reach of the receptive field, only outputs
    that saw their full context get weight, so blending reproduces whole-image prediction.
    """
    w = np.ones(size, np.float32)
    if overlap > 0:
        margin = overlap // 2
        ramp = np.zeros(overlap, np.float32)
        ramp[margin:] = (np.arange(overlap - margin, dtype=np.float32) + 1) / (overlap - margin + 1)
        if left:
            w[:overlap] = np.minimum(w[:overlap], ramp)
        if right:
            w[size - overlap:] = np.minimum(w[size - overlap:], ramp[::-1])
    return w


def _pad_to(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    pad = [(0, shape[0] - image.shape[0]), (0, shape[1] - image.shape[1])]
    if not any(p[1] for p in pad):
        return image
    mode = "reflect" if all(p[1] < n for p, n in zip(pad, image.shape)) else "symmetric"
    if mode == "symmetric" and any(p[1] > n for p, n in zip(pad, image.shape)):
        mode = "edge"
    return np.pad(image, pad, mode=mode)


def predict_tiled(predict_batch: Callable[[np.ndarray], np.ndarray], image: np.ndarray, divisor: int,
                  tile: int = 512, overlap: int = 64) -> np.ndarray:
    """(H, W, C) network output for a normalised 2D image, tiled with overlap and blending.

    `predict_batch` maps (1, h, w, 1) float32 to (1, h, w, C); `tile` and `overlap` are
    rounded up to multiples of `divisor`.
    """
    image = np.asarray(image, np.float32)
    if image.ndim != 2:
        raise InputError(f"expected a 2D image, got shape {image.shape}")
    h, w = image.shape
    up = lambda v: max(divisor, int(math.ceil(v / divisor)) * divisor)  # noqa: E731
    overlap = up(overlap)
    tile = max(up(tile), 2 * overlap)
    padded = _pad_to(image, (up(h), up(w)))
    H, W = padded.shape
    th, tw = min(tile, H), min(tile, W)
    if th == H and tw == W:
        return np.asarray(predict_batch(padded[None, ..., None]))[0, :h, :w]
    step = max(divisor, (tile - overlap) // divisor * divisor)
    rows, cols = tile_starts(H, th, step), tile_starts(W, tw, step)
    out = None
    weight = np.zeros((H, W), np.float32)
    for r in rows:
        wr = _window(th, overlap, r > 0, r + th < H)
        for c in cols:
            wc = _window(tw, overlap, c > 0, c + tw < W)
            pred = np.asarray(predict_batch(padded[None, r:r + th, c:c + tw, None]))[0]
            if out is None:
                out = np.zeros((H, W, pred.shape[-1]), np.float32)
            wt = wr[:, None] * wc[None, :]
            out[r:r + th, c:c + tw] += pred * wt[..., None]
            weight[r:r + th, c:c + tw] += wt
    return (out / weight[..., None])[:h, :w]


def stardist_tiles(shape: tuple[int, int], tile: int) -> tuple[int, int]:
    """StarDist `n_tiles` so that each tile is at most about `tile` px on a side."""
    return tuple(max(1, int(math.ceil(n / tile))) for n in shape)


def predict_stardist(model, image: np.ndarray, tile: int = 1024) -> np.ndarray:
    """Instance labels of a normalised 2D image with the model's optimised thresholds."""
    labels, _ = model.predict_instances(np.asarray(image, np.float32), n_tiles=stardist_tiles(image.shape, tile),
                                        show_tile_progress=False, verbose=False)
    return labels


WARM_REPEATS = 3


def warm_inference_seconds(predict: Callable[[np.ndarray], np.ndarray], image: np.ndarray,
                           repeats: int = WARM_REPEATS) -> float:
    """Median wall time of `predict(image)` over `repeats` calls, once the model is traced: the
    first call on a freshly loaded model includes tracing (128-299 ms against 2-11 ms warm)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(image)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))
