"""Training data: patch size per factor, patch grid, the minimal-foreground rule, validation split.

Pure computation on in-memory arrays. The patch side follows the factor so every model sees
the same field of view: side = base / scale, capped, never larger than the smallest image and
always a multiple of the network's divisor (2^depth, times the StarDist grid).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from rescale4dl_bmz.errors import InputError


def patch_size_for_factor(scale: float, base: int, cap: int, min_side: int, divisor: int,
                          margin_steps: int = 0) -> int:
    """Patch side at factor `scale` for `base` px at og (may be <= 0 when images are too small).

    U-Net (paper): base 512, cap 512 -> 512 at og and finer, 256 ds2, 128 ds4, 64 ds8, 32 ds16.
    `margin_steps` keeps that many divisor steps free inside the image (StarDist: 1, so random
    crops still move, like the paper's (floor(side/16) - 1) * 16).
    """
    target = min(base / scale, cap)
    fit = (min_side // divisor - margin_steps) * divisor
    return int(min(target, fit)) // divisor * divisor


def grid_origins(shape: Sequence[int], patch: int) -> list[tuple[int, int]]:
    """Top-left corners of the non-overlapping patch grid anchored at (0, 0)."""
    return [(r, c) for r in range(0, shape[0] - patch + 1, patch) for c in range(0, shape[1] - patch + 1, patch)]


def foreground_fraction(labels: np.ndarray) -> float:
    return float(np.count_nonzero(labels)) / labels.size if labels.size else 0.0


PAPER_MIN_FOREGROUND = 0.05  # ZeroCostDL4Mic's "minimal fraction" of foreground per patch


def auto_min_foreground(labels: Sequence[np.ndarray]) -> float:
    """The patch foreground threshold that adapts to the data: the paper's 5 %, or half the data's
    own foreground share when that is lower (sparse data: E. coli fields hold a few cells, about
    4 % foreground, and the fixed 5 % rejected every whole-image patch)."""
    pixels = sum(int(np.asarray(y).size) for y in labels)
    share = sum(int(np.count_nonzero(y)) for y in labels) / pixels if pixels else 0.0
    return min(PAPER_MIN_FOREGROUND, share / 2)


def qualifying_patches(labels: np.ndarray, patch: int, min_fg: float) -> int:
    """How many grid patches of one label image pass the foreground rule."""
    return sum(keeps_patch(foreground_fraction(labels[r:r + patch, c:c + patch]), min_fg)
               for r, c in grid_origins(labels.shape, patch))


def keeps_patch(fraction: float, min_fg: float) -> bool:
    """The foreground rule: at least `min_fg`, and never an empty patch unless `min_fg` is 0."""
    return fraction >= min_fg and (fraction > 0 or min_fg == 0)


@dataclass
class Split:
    """Training and validation items (normalised images and their labels) and where they came from."""

    unit: str  # "image" (whole images split) or "patch" (patches of all images split)
    patch_size: int
    train_x: list = field(default_factory=list)
    train_y: list = field(default_factory=list)
    val_x: list = field(default_factory=list)
    val_y: list = field(default_factory=list)
    train_ids: list = field(default_factory=list)
    val_ids: list = field(default_factory=list)
    n_rejected: int = 0  # grid patches dropped by the minimal-foreground rule
    skipped_images: list = field(default_factory=list)  # images without a single qualifying patch

    def summary(self) -> dict:
        return {"unit": self.unit, "patch_size": self.patch_size, "n_train": len(self.train_x),
                "n_val": len(self.val_x), "n_rejected_patches": self.n_rejected,
                "images_without_patches": self.skipped_images,
                "train": self.train_ids, "validation": self.val_ids}


def _patches(images, labels, names, idx, patch, min_fg):
    xs, ys, ids, rejected = [], [], [], 0
    for i in idx:
        for r, c in grid_origins(labels[i].shape, patch):
            y = labels[i][r:r + patch, c:c + patch]
            if not keeps_patch(foreground_fraction(y), min_fg):
                rejected += 1
                continue
            xs.append(images[i][r:r + patch, c:c + patch])
            ys.append(y)
            ids.append(f"{names[i]}@{r},{c}")
    return xs, ys, ids, rejected


def n_validation(n: int, fraction: float) -> int:
    """Validation items out of n: round(n * fraction), at least 1, leaving at least 1 to train."""
    return min(n - 1, max(1, int(round(n * fraction))))


def split_data(images: Sequence[np.ndarray], labels: Sequence[np.ndarray], patch: int, *,
               fraction: float, seed: int, min_fg: float, whole_images: bool,
               names: Sequence[str] | None = None) -> Split:
    """Split into training and validation with a seeded permutation.

    With enough images (n * fraction >= 1) whole images are split, so validation never shares
    an image with training. Otherwise the grid patches of all images are split (the
    ZeroCostDL4Mic way). U-Net items are grid patches with >= `min_fg` foreground (and never
    an empty one); images without any such patch take no part in the split. With `whole_images`
    (StarDist, which samples its own crops) whole images are kept as items.
    """
    names = list(names) if names is not None else [str(i) for i in range(len(images))]
    rng = np.random.default_rng(seed)
    rule = f"patches of {patch}x{patch} px with >= {min_fg:.1%} foreground"
    usable = list(range(len(images)))
    if not whole_images:  # images without a single qualifying patch can neither train nor validate
        usable = [i for i in usable if qualifying_patches(labels[i], patch, min_fg)]
        if not usable:
            raise InputError(f"no {rule} in any of the {len(images)} images ({_names(names, range(len(images)))}): "
                             "lower the minimal foreground fraction or use smaller patches")
    skipped = [names[i] for i in range(len(images)) if i not in set(usable)]
    n_skipped = sum(len(grid_origins(labels[i].shape, patch)) for i in range(len(images)) if i not in set(usable))
    images, labels, names = [images[i] for i in usable], [labels[i] for i in usable], [names[i] for i in usable]
    n = len(images)
    if n * fraction >= 1 and n >= 2:
        perm = rng.permutation(n)
        n_val = n_validation(n, fraction)
        val_idx, train_idx = sorted(perm[:n_val]), sorted(perm[n_val:])
        out = Split("image", patch, skipped_images=skipped, n_rejected=n_skipped)
        if whole_images:
            out.train_x = [images[i] for i in train_idx]
            out.train_y = [labels[i] for i in train_idx]
            out.val_x = [images[i] for i in val_idx]
            out.val_y = [labels[i] for i in val_idx]
            out.train_ids = [names[i] for i in train_idx]
            out.val_ids = [names[i] for i in val_idx]
            return out
        out.train_x, out.train_y, out.train_ids, r1 = _patches(images, labels, names, train_idx, patch, min_fg)
        out.val_x, out.val_y, out.val_ids, r2 = _patches(images, labels, names, val_idx, patch, min_fg)
        out.n_rejected += r1 + r2
        return out

    xs, ys, ids, rejected = _patches(images, labels, names, range(n), patch, min_fg)
    if len(xs) < 2:
        raise InputError(f"dataset too small for a validation split: {n} image(s) give {len(xs)} {rule}; "
                         "at least 2 are needed (1 to train, 1 to validate): add images or use a smaller patch size")
    perm = rng.permutation(len(xs))
    n_val = n_validation(len(xs), fraction)
    val_idx, train_idx = sorted(perm[:n_val]), sorted(perm[n_val:])
    return Split("patch", patch,
                 [xs[i] for i in train_idx], [ys[i] for i in train_idx],
                 [xs[i] for i in val_idx], [ys[i] for i in val_idx],
                 [ids[i] for i in train_idx], [ids[i] for i in val_idx], rejected + n_skipped, skipped)



def _names(names: Sequence[str], idx) -> str:
    shown = [names[i] for i in idx]
    return ", ".join(shown[:8]) + (f" and {len(shown) - 8} more" if len(shown) > 8 else "")
