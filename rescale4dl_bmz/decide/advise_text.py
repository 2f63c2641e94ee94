"""The advisor's verdicts in words: why each factor got its verdict, and what to change when
no factor puts the objects in the window. `decide.advise` decides; this module only says.
"""

from __future__ import annotations

from typing import Sequence

from rescale4dl_bmz.decide.advise import HOPELESS_SIZE_PX, HOPELESS_SIZE_RF, FactorAdvice, ReceptiveField


def factor_reason(measure: str, size_px: float, verdict: str, low_px: float, high_px: float, share: float,
                  hopeless: bool) -> str:
    """Why a factor got `verdict` ('too wide', 'too narrow' or 'recommended'): its object size
    (`measure`) against the window [low_px, high_px], the share of objects inside, and the limit
    that makes it hopeless."""
    name = measure.replace("_", " ")
    if verdict == "too wide":
        reason = f"{name} {size_px:.1f} px > RF/2 = {high_px:.1f} px: too little context"
    elif verdict == "too narrow":
        reason = f"{name} {size_px:.1f} px < {low_px:.0f} px: shape is lost"
    else:
        reason = f"{name} {size_px:.1f} px within {low_px:.0f}-{high_px:.1f} px (6 px to RF/2)"
    reason += f"; {share:.0%} of the objects inside"
    if hopeless:
        reason += " (hopeless: " + (f"{name} < {HOPELESS_SIZE_PX:.0f} px" if size_px < HOPELESS_SIZE_PX
                                   else f"{name} > {HOPELESS_SIZE_RF:.0f} x RF") + ")"
    return reason


def no_window_advice(advice: Sequence[FactorAdvice], rf: ReceptiveField) -> str:
    """What to do when no factor puts the median object inside the window."""
    if not advice:
        return ""
    low, high = advice[0].window_low_px, advice[0].window_high_px
    if all(a.size_px > high for a in advice):
        return (f"objects stay wider than RF/2 = {high:.1f} px at every factor: add coarser factors "
                f"(ds32), or use a network with a larger receptive field (U-Net depth 3: 105 px)")
    if all(a.size_px < low for a in advice):
        return (f"objects stay narrower than {low:.0f} px at every factor: add finer factors (up2, up4) "
                "or acquire at a finer pixel size")
    return (f"the factors jump over the window {low:.0f}-{high:.1f} px: add the factor in between")
