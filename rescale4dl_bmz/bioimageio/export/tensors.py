"""Test tensors of a package: a crop of a real image at the model's sampling, and the output the
package must reproduce from it (computed on the input after the package's own preprocessing).
"""

from __future__ import annotations

import numpy as np

from rescale4dl_bmz.errors import InputError

MAX_TEST_SIDE = 256
EPS = 1e-6  # bioimageio.core's scale_range epsilon


def candidate_crops(shape: tuple[int, int], divisor: int, max_side: int = MAX_TEST_SIDE) -> list[tuple[slice, slice]]:
    """Candidate crops (centre first, then the four corners) with sides multiple of `divisor`."""
    h, w = shape
    side_h = min(h, max(max_side, divisor)) // divisor * divisor
    side_w = min(w, max(max_side, divisor)) // divisor * divisor
    if side_h < divisor or side_w < divisor:
        raise InputError(f"test image {h}x{w} is smaller than the model's tile multiple ({divisor} px)")
    starts = [((h - side_h) // 2, (w - side_w) // 2), (0, 0), (0, w - side_w), (h - side_h, 0), (h - side_h, w - side_w)]
    out = []
    for y, x in starts:
        s = (slice(y, y + side_h), slice(x, x + side_w))
        if s not in out:
            out.append(s)
    return out


def scale_range(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """bioimageio's `scale_range` over y and x: (x - p_low) / (p_high - p_low + 1e-6), float32."""
    x = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(x, [low, high])
    return ((x - lo) / (hi - lo + EPS)).astype(np.float32)


def expected_output(network, image: np.ndarray) -> np.ndarray:
    """The package's output (batch, y, x, channel) for one raw 2D `image`."""
    x = scale_range(image, network.low_percentile, network.high_percentile)[None, ..., None]
    raw = np.asarray(network.keras_model.predict(x, verbose=0), dtype=np.float32)
    if network.task == "semantic":
        return raw
    from stardist import non_maximum_suppression, polygons_to_label

    post = network.stardist
    prob, dist = raw[0, ..., 0], raw[0, ..., 1:]
    points, probi, disti = non_maximum_suppression(dist, prob, grid=post["grid"], prob_thresh=post["prob_threshold"],
                                                   nms_thresh=post["nms_threshold"], b=post["b"])
    labels = polygons_to_label(disti, points, prob=probi, shape=image.shape)
    return labels.astype(np.int32)[None, ..., None]


def make_test_tensors(network, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(test input (1, H, W, 1) float32, expected output) from the first crop with a non-empty output."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise InputError(f"test image must be 2D, got shape {image.shape}")
    for sl in candidate_crops(image.shape, network.divisor):
        crop = image[sl].astype(np.float32)
        if float(crop.max() - crop.min()) == 0:
            continue
        out = expected_output(network, crop)
        if np.abs(out).max() > 1e-4:
            return crop[None, ..., None], out
    what = "objects" if network.task == "instance" else "non-zero output"
    raise InputError(f"the model gives no {what} on any crop of the test image; pass another test image")
