"""What the network of one factor learns from an original mask: the mask rescaled (instance task),
or 0/1/2 semantic labels derived at og and rescaled, or derived at the factor (`label_source`)."""

from __future__ import annotations

import numpy as np

from rescale4dl_bmz.factors import Factor
from rescale4dl_bmz.sweep.config import SweepConfig


def semantic_labels(config: SweepConfig, factor: Factor, og_mask: np.ndarray | None = None,
                    factor_mask: np.ndarray | None = None) -> np.ndarray:
    """0/1/2 labels at `factor`: derived at og and rescaled (label_source from-og, as the paper
    did), or derived from the factor's own instance mask (rescaled from `og_mask` if not given)."""
    from rescale4dl_bmz.data.labels import instance_to_semantic
    from rescale4dl_bmz.data.rescale import rescale_mask

    if config.label_source == "from-og":
        return rescale_mask(instance_to_semantic(og_mask, config.label_style), factor, config.mode)
    if factor_mask is None:
        factor_mask = rescale_mask(og_mask, factor, config.mode)
    return instance_to_semantic(factor_mask, config.label_style)


def factor_labels(config: SweepConfig, og_mask: np.ndarray, factor: Factor) -> np.ndarray:
    """What the network of this factor learns from one cropped og mask (as `stage_data` makes it)."""
    from rescale4dl_bmz.data.rescale import rescale_mask

    if config.task != "semantic":
        return rescale_mask(og_mask, factor, config.mode)
    return semantic_labels(config, factor, og_mask)

