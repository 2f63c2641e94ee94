"""Per-image percentile normalisation (csbdeep's convention, without clipping)."""

from __future__ import annotations

import numpy as np

from rescale4dl_bmz.errors import InputError

EPS = 1e-20


def percentile_normalize(image: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """(image - p_low) / (p_high - p_low) as float32; a flat image becomes all zeros."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise InputError(f"expected a 2D image, got shape {image.shape}")
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool) or np.iscomplexobj(image):
        raise InputError(f"image pixel type {image.dtype} is not a real number type")
    x = image.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise InputError("image holds NaN or infinite values")
    lo, hi = np.percentile(x, [low, high])
    return ((x - lo) / max(float(hi - lo), EPS)).astype(np.float32, copy=False)
