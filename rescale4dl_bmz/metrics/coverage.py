"""Coverage, throughput and storage at a sampling factor (pure arithmetic, array-friendly).

- `pct_diameter_per_pixel` = 100 / D: the share of an object's diameter that one pixel spans
  (the paper's x-axis).
- `pct_area_per_pixel` = 100 / area: one pixel's share of the object's area (what the published
  tables' `GT_Pixel_Coverage_Percent` column holds).
- `throughput` TH_s = CAM_FOV / A_s / τ: objects imaged per unit time, with CAM_FOV the original
  (camera) image area in pixels, A_s the mean object area in pixels at factor s and τ the time
  to acquire one field.
- `bytes_per_object`: storage of a field at factor s divided by the objects it holds.
Zero or missing denominators give NaN.
"""

from __future__ import annotations

import numpy as np

from rescale4dl_bmz.errors import InputError


def _safe_ratio(num, den):
    num, den = np.asarray(num, float), np.asarray(den, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return float(out) if out.ndim == 0 else out


def pct_diameter_per_pixel(diameter_px):
    """100 / diameter (pixels): % of the object's diameter covered by one pixel."""
    return _safe_ratio(100.0, diameter_px)


def pct_area_per_pixel(area_px):
    """100 / area (pixels): % of the object's area covered by one pixel."""
    return _safe_ratio(100.0, area_px)


def throughput(fov_area_px, object_area_px, tau: float = 1.0):
    """CAM_FOV / A_s / τ: objects per field of view per unit time."""
    if not tau > 0:
        raise InputError(f"time per field (tau) must be positive, got {tau}")
    return _safe_ratio(fov_area_px, np.asarray(object_area_px, float) * tau)


def bytes_per_object(n_pixels, n_objects, bytes_per_pixel: float = 2.0):
    """Bytes of image data stored per object: n_pixels × bytes_per_pixel / n_objects."""
    if not bytes_per_pixel > 0:
        raise InputError(f"bytes per pixel must be positive, got {bytes_per_pixel}")
    return _safe_ratio(np.asarray(n_pixels, float) * bytes_per_pixel, n_objects)
