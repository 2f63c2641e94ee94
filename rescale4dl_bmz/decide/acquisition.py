"""The acquisition planner (`plan_*`): what each factor's pixel size means at the microscope.

For a camera of W x H pixels acquiring one field every `tau` seconds at the pixel size of
factor s (original x s), with rho objects per original pixel counted in the annotations
(`objects_per_original_px`) and objects of mean area A_s pixels at that sampling:

    objects per field = rho * W*H * s^2      (a field at factor s covers W*H*s^2 original pixels)
    objects per hour  = objects per field * 3600 / tau
    bytes per field   = W*H * bytes_per_pixel (16-bit: 2)
    bytes per hour    = bytes per field * 3600 / tau   (the same for every factor)
    bytes per object  = bytes per field / objects per field   (as summary.csv's bytes_per_object)
    packing limit     = W*H / A_s            (`packing_limit_per_fov`: objects wall to wall, an
                                              upper bound, the paper's TH_s x tau)

A_s comes from the sweep (mean object area in the factor's own pixels) where measured, else
from the nearest measured factor scaled by (s_ref / s)^2. Pure computation, no IO; the plan as
text: `plan_text`.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.factors import parse_factor

if TYPE_CHECKING:
    import pandas as pd

BYTES_PER_PIXEL = 2  # 16-bit camera


def plan_parse_camera(text: str) -> tuple[int, int]:
    """'2048x2048' (or '2048X2048', '2048*2048') -> (width, height), both positive."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX*×]\s*(\d+)\s*", str(text))
    if not m:
        raise InputError(f"--camera {text!r} is not WIDTHxHEIGHT in pixels (e.g. 2048x2048)")
    w, h = int(m.group(1)), int(m.group(2))
    if w <= 0 or h <= 0:
        raise InputError(f"--camera {text!r}: width and height must be positive")
    return w, h


def plan_areas(factors: list[str], measured: dict[str, float]) -> dict[str, tuple[float, str]]:
    """Mean object area (px) per factor and where it came from ('measured' or 'from <ref>')."""
    if not measured:
        raise InputError("the sweep's summary has no mean object area (mean_object_area_px); cannot plan")
    out = {}
    for name in factors:
        s = parse_factor(name).scale
        if name in measured:
            out[name] = (measured[name], "measured")
            continue
        ref = min(measured, key=lambda r: abs(math.log2(parse_factor(r).scale / s)))
        out[name] = (measured[ref] * (parse_factor(ref).scale / s) ** 2, f"from {ref}")
    return out


def plan_density(summary: pd.DataFrame, per_image: pd.DataFrame | None = None) -> float:
    """Objects per original pixel counted in the annotations: the summary's
    `objects_per_original_px` (native grid, finest factor), else ground-truth objects / original
    pixels of the per-image table (native grid)."""
    import pandas as pd

    for table, how in ((summary, "summary"), (per_image, "per_image")):
        if table is None or table.empty:
            continue
        rows = table
        if "grid" in rows.columns and (rows["grid"].astype(str) == "native").any():
            rows = rows[rows["grid"].astype(str) == "native"]
        if how == "summary" and "objects_per_original_px" in rows.columns:
            rows = rows.assign(_s=[parse_factor(f).scale for f in rows["factor"].astype(str)]).sort_values("_s")
            values = pd.to_numeric(rows["objects_per_original_px"], errors="coerce").dropna()
            if len(values) and values.iloc[0] > 0:
                return float(values.iloc[0])
        if how == "per_image" and {"n_true", "fov_area_px"} <= set(rows.columns):
            first = min(rows["factor"].astype(str), key=lambda f: parse_factor(f).scale)
            rows = rows[rows["factor"].astype(str) == first]
            area = pd.to_numeric(rows["fov_area_px"], errors="coerce").sum()
            if area > 0:
                return float(pd.to_numeric(rows["n_true"], errors="coerce").sum() / area)
    raise InputError("the sweep's tables hold no object count per field (objects_per_original_px in summary.csv, "
                     "or n_true and fov_area_px in per_image.csv); rerun the evaluation")


def plan_acquisition(factors: list[str], areas: dict[str, float], camera: tuple[int, int], tau_s: float,
                     pixel_size_um: float | None = None, chosen: str | None = None,
                     bytes_per_pixel: int = BYTES_PER_PIXEL, *, density: float) -> pd.DataFrame:
    """One row per factor (finest first): pixel size, field of view, objects and bytes per field/hour.

    `density` is the objects per original pixel counted in the annotations (`plan_density`);
    `areas` maps factor names to mean object areas in that factor's pixels (see `plan_areas`),
    for the packing limit; `pixel_size_um` is the ORIGINAL pixel size (None: pixel sizes and
    fields stay unknown).
    """
    import pandas as pd

    w, h = camera
    if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
        raise InputError(f"camera size must be two positive integers, got {camera!r}")
    if not (isinstance(tau_s, (int, float)) and math.isfinite(tau_s) and tau_s > 0):
        raise InputError(f"--tau must be a positive number of seconds per field, got {tau_s!r}")
    if pixel_size_um is not None and not (math.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise InputError(f"--pixel-size must be positive, got {pixel_size_um!r}")
    if bytes_per_pixel <= 0:
        raise InputError(f"bytes per pixel must be positive, got {bytes_per_pixel!r}")
    if not (isinstance(density, (int, float)) and math.isfinite(density) and density > 0):
        raise InputError(f"objects per original pixel must be positive, got {density!r}")
    names = sorted({parse_factor(f).name for f in factors}, key=lambda n: parse_factor(n).scale)
    if chosen is not None and parse_factor(chosen).name not in names:
        raise InputError(f"factor {chosen} is not among the planned factors ({', '.join(names)})")
    chosen = None if chosen is None else parse_factor(chosen).name
    rows = []
    fields_per_hour = 3600.0 / tau_s
    for name in names:
        if name not in areas or not areas[name] > 0:
            raise InputError(f"no positive mean object area for factor {name}")
        s = parse_factor(name).scale
        area = float(areas[name])
        px = None if pixel_size_um is None else pixel_size_um * s
        per_field = density * w * h * s * s
        rows.append({
            "factor": name, "scale": s, "pixel_size_um": px,
            "fov_width_um": None if px is None else w * px,
            "fov_height_um": None if px is None else h * px,
            "mean_object_area_px": area,
            "objects_per_original_px": density,
            "objects_per_fov": per_field,
            "packing_limit_per_fov": w * h / area,
            "objects_per_hour": per_field * fields_per_hour,
            "bytes_per_fov": w * h * bytes_per_pixel,
            "bytes_per_hour": w * h * bytes_per_pixel * fields_per_hour,
            "bytes_per_object": w * h * bytes_per_pixel / per_field,
            "chosen": name == chosen,
        })
    return pd.DataFrame(rows)
