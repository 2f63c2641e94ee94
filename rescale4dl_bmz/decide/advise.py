"""Training-free advice: which factors put the objects in the network's sweet spot.

One object size decides, for both limits (`object_size_measure` chooses it once per data set):
the WIDTH (2 x the median local thickness along the skeleton, `metrics.morphology`) for
elongated objects, the circle-EQUIVALENT diameter for round ones. A U-Net labels a pixel from
what it sees within its receptive field (RF): to tell an object's interior from its edge it must
reach across the object's short axis, so the width is what counts for a worm or a rod (its
length does not matter); for a round object width and equivalent diameter agree.

The window (calibrated on the ReScale4DL paper, see README "How the advisor decides"):
size at the factor between `MIN_SIZE_PX` (6 px: narrower objects lose their shape) and
`MAX_SIZE_RF` x RF (RF/2: wider objects lack context), i.e. 4-16 % of the size per pixel for
the paper's 49 px U-Net, the union of the paper's semantic windows (E. coli 8-16 %, worms 4-8 %).
Sizes are measured once on the original masks and divided by the factor, since a rescaled
object keeps its shape. Each factor's `confidence` is the share of objects whose size at that
factor lies inside the window. At least one factor is always recommended: when no factor puts
the median object inside the window, the closest one (on a log scale) is, with the advice of
what to change (`advise_text.no_window_advice`). The verdicts are decided here, their words
in `advise_text`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from rescale4dl_bmz.factors import Factor

# StarDist 2D default (depth 3, grid 2): theoretical ~200 px; StarDist's own empirical
# estimate of the effective field is ~94 px. The effective one decides what the network uses.
STARDIST_RF_THEORETICAL = {1: 98, 2: 200}
STARDIST_RF_EFFECTIVE = 94

MIN_SIZE_PX = 6.0         # smaller objects lose their shape
MAX_SIZE_RF = 0.5         # larger than RF/2: not enough context
HOPELESS_SIZE_PX = 3.0    # pruned by the sweep
HOPELESS_SIZE_RF = 2.0
ELONGATION_LIMIT = 1.25   # median equivalent diameter / width above which objects count as elongated
SIZE_MEASURES = ("width", "equivalent_diameter")


def object_size_measure(equivalent_diameters: Sequence[float], widths: Sequence[float]) -> str:
    """'width' for elongated objects, 'equivalent_diameter' for round ones (one choice per data set).

    Elongated: the median ratio equivalent diameter / width is at least `ELONGATION_LIMIT`
    (a disk gives 1, a rod twice as long as wide about 1.6; S. aureus cocci 1.1, the E. coli
    here 1.4, C. elegans 3.6).
    """
    d = np.asarray(equivalent_diameters, float)
    w = np.asarray(widths, float)
    keep = np.isfinite(d) & np.isfinite(w) & (w > 0)
    if not keep.any():
        return "width"
    return "width" if float(np.median(d[keep] / w[keep])) >= ELONGATION_LIMIT else "equivalent_diameter"


@dataclass(frozen=True)
class ReceptiveField:
    model: str
    theoretical_px: float
    effective_px: float


def receptive_field(model: str = "unet", depth: int | None = None, grid: int = 2) -> ReceptiveField:
    """The receptive field of the paper's networks (`unet` with `depth` pooling steps, or `stardist`)."""
    if model == "unet":
        from rescale4dl_bmz.models.unet import analytic_unet_rf

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
    size_measure: str           # "width" or "equivalent_diameter": what size_px is
    size_px: float              # median object size at this factor (the decision's size)
    equivalent_diameter_px: float  # median circle-equivalent diameter at this factor
    width_px: float             # median object width at this factor
    rf_px: float                # effective receptive field
    rf_theoretical_px: float
    rf_over_size: float
    pct_diameter_per_pixel: float  # 100 / size_px (the same quantity as summary.csv's, same measure)
    window_low_px: float        # the window in px at every factor
    window_high_px: float
    confidence: float           # share of objects whose size at this factor lies in the window
    verdict: str                # "recommended", "closest (no factor fits)", "too wide", "too narrow"
    hopeless: bool              # the sweep may prune it
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def advise(diameters_px: Sequence[float], widths_px: Sequence[float], factors: Sequence[Factor],
           rf: ReceptiveField, pixel_size_um: float | None = None, *,
           measure: str | None = None) -> list[FactorAdvice]:
    """Per factor: object size against the window [MIN_SIZE_PX, MAX_SIZE_RF x RF], and a verdict.

    `diameters_px`/`widths_px` are per-object equivalent diameters and widths on the original
    masks; `measure` ('width' or 'equivalent_diameter') defaults to `object_size_measure`.
    """
    from rescale4dl_bmz.decide.advise_text import factor_reason, no_window_advice

    d = np.asarray(diameters_px, float)
    w = np.asarray(widths_px, float)
    if d.size == 0:
        raise ValueError("no objects to measure: the masks are empty")
    measure = object_size_measure(d, w) if measure is None else measure
    if measure not in SIZE_MEASURES:
        raise ValueError(f"unknown size measure {measure!r}: use one of {', '.join(SIZE_MEASURES)}")
    sizes = (w if measure == "width" else d)
    sizes = sizes[np.isfinite(sizes)]
    s0, d0, w0 = float(np.median(sizes)), float(np.nanmedian(d)), float(np.nanmedian(w))
    low, high = MIN_SIZE_PX, MAX_SIZE_RF * rf.effective_px
    out = []
    for f in factors:
        size = s0 / f.scale
        share = float(np.mean((sizes / f.scale >= low) & (sizes / f.scale <= high)))
        verdict = "too wide" if size > high else "too narrow" if size < low else "recommended"
        hopeless = size < HOPELESS_SIZE_PX or size > HOPELESS_SIZE_RF * rf.effective_px
        reason = factor_reason(measure, size, verdict, low, high, share, hopeless)
        out.append(FactorAdvice(
            factor=f.name, scale=f.scale, pixel_size_um=f.pixel_size(pixel_size_um), size_measure=measure,
            size_px=size, equivalent_diameter_px=d0 / f.scale, width_px=w0 / f.scale,
            rf_px=rf.effective_px, rf_theoretical_px=rf.theoretical_px,
            rf_over_size=rf.effective_px / size if size > 0 else float("inf"),
            pct_diameter_per_pixel=100.0 / size if size > 0 else float("inf"),
            window_low_px=low, window_high_px=high, confidence=share,
            verdict=verdict, hopeless=hopeless, reason=reason))
    if out and not any(a.verdict == "recommended" for a in out):
        centre = np.sqrt(low * high)
        k = int(np.argmin([abs(np.log(a.size_px / centre)) for a in out]))
        a = out[k]
        out[k] = FactorAdvice(**{**a.as_dict(), "verdict": "closest (no factor fits)",
                                 "reason": a.reason + "; " + no_window_advice(out, rf)})
    return out


def recommended_range(advice: Sequence[FactorAdvice]) -> list[str]:
    """Names of the recommended factors (finest first); never empty when there is advice:
    the closest factor stands in when none fits the window."""
    good = [a.factor for a in advice if a.verdict == "recommended"]
    return good or [a.factor for a in advice if a.verdict.startswith("closest")]
