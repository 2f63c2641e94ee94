"""Training-free advice: which factors put the objects in the network's sweet spot.

A CNN sees a window of RF pixels. Objects much wider than the window lack context (masks
fragment); objects only a few pixels wide lose their shape. DESIGN.md: keep the object diameter
below about RF/2 and the object width above about 6 px (the paper's window for a 49 px RF U-Net:
4-16 % of the diameter per pixel). Diameters are measured once on the original masks and divided
by the factor, since a rescaled object keeps its shape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from .factors import Factor

# StarDist 2D default (depth 3, grid 2): theoretical ~200 px; StarDist's own empirical
# estimate of the effective field is ~94 px. The effective one decides what the network uses.
STARDIST_RF_THEORETICAL = {1: 98, 2: 200}
STARDIST_RF_EFFECTIVE = 94

MIN_WIDTH_PX = 6.0        # narrower objects lose their shape
MAX_DIAMETER_RF = 0.5     # wider than RF/2: not enough context
HOPELESS_WIDTH_PX = 3.0   # pruned by the sweep
HOPELESS_DIAMETER_RF = 2.0


@dataclass(frozen=True)
class ReceptiveField:
    model: str
    theoretical_px: float
    effective_px: float


def receptive_field(model: str = "unet", depth: int | None = None, grid: int = 2) -> ReceptiveField:
    """The receptive field of the paper's networks (`unet` with `depth` pooling steps, or `stardist`)."""
    if model == "unet":
        from .models.unet import analytic_unet_rf

        rf = float(analytic_unet_rf(2 if depth is None else depth))
        return ReceptiveField("unet", rf, rf)
    if model == "stardist":
        theo = STARDIST_RF_THEORETICAL.get(grid, 200)
        return ReceptiveField("stardist", float(theo), float(STARDIST_RF_EFFECTIVE))
    raise ValueError(f"unknown model {model!r}: use 'unet' or 'stardist'")


@dataclass(frozen=True)
class FactorAdvice:
    factor: str
    scale: float
    pixel_size_um: float | None
    diameter_px: float          # median circle-equivalent diameter at this factor
    width_px: float             # median object width at this factor
    rf_px: float                # effective receptive field
    rf_theoretical_px: float
    rf_over_diameter: float
    pct_diameter_per_pixel: float
    verdict: str                # "recommended", "too wide", "too narrow"
    hopeless: bool              # the sweep may prune it
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def advise(diameters_px: Sequence[float], widths_px: Sequence[float], factors: Sequence[Factor],
           rf: ReceptiveField, pixel_size_um: float | None = None) -> list[FactorAdvice]:
    """Per factor: object size against the receptive field, and a verdict.

    `diameters_px`/`widths_px` are per-object measurements on the original masks.
    """
    d = np.asarray(diameters_px, float)
    w = np.asarray(widths_px, float)
    if d.size == 0:
        raise ValueError("no objects to measure: the masks are empty")
    d0, w0 = float(np.median(d)), float(np.median(w))
    out = []
    for f in factors:
        dia, wid = d0 / f.scale, w0 / f.scale
        if dia > MAX_DIAMETER_RF * rf.effective_px:
            verdict = "too wide"
            reason = f"diameter {dia:.1f} px > RF/2 = {rf.effective_px / 2:.0f} px: too little context"
        elif wid < MIN_WIDTH_PX:
            verdict = "too narrow"
            reason = f"width {wid:.1f} px < {MIN_WIDTH_PX:.0f} px: shape is lost"
        else:
            verdict = "recommended"
            reason = f"diameter {dia:.1f} px within RF/2, width {wid:.1f} px >= {MIN_WIDTH_PX:.0f} px"
        hopeless = wid < HOPELESS_WIDTH_PX or dia > HOPELESS_DIAMETER_RF * rf.effective_px
        if hopeless:
            reason += " (hopeless: " + (f"width < {HOPELESS_WIDTH_PX:.0f} px" if wid < HOPELESS_WIDTH_PX
                                       else f"diameter > {HOPELESS_DIAMETER_RF:.0f} x RF") + ")"
        out.append(FactorAdvice(
            factor=f.name, scale=f.scale, pixel_size_um=f.pixel_size(pixel_size_um),
            diameter_px=dia, width_px=wid, rf_px=rf.effective_px, rf_theoretical_px=rf.theoretical_px,
            rf_over_diameter=rf.effective_px / dia if dia > 0 else float("inf"),
            pct_diameter_per_pixel=100.0 / dia if dia > 0 else float("inf"),
            verdict=verdict, hopeless=hopeless, reason=reason))
    return out


def recommended_range(advice: Sequence[FactorAdvice]) -> list[str]:
    """Names of the factors whose verdict is `recommended` (finest first)."""
    return [a.factor for a in advice if a.verdict == "recommended"]
