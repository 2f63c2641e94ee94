"""Augmentation of (normalised image, labels) patches and the seeded U-Net batch stream."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from rescale4dl_bmz.models.config import Augmentation


def augment_pair(x: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                 cfg: Augmentation) -> tuple[np.ndarray, np.ndarray]:
    """Same flips/rotation for image and labels; intensity scale and noise on the image only."""
    if cfg.enabled:
        if cfg.flips:
            if rng.random() < 0.5:
                x, y = x[::-1], y[::-1]
            if rng.random() < 0.5:
                x, y = x[:, ::-1], y[:, ::-1]
        if cfg.rot90:
            # a non-square patch may only turn by 180° (its shape must not change)
            k = int(rng.integers(4)) if x.shape[0] == x.shape[1] else 2 * int(rng.integers(2))
            x, y = np.rot90(x, k), np.rot90(y, k)
        x = x * np.float32(rng.uniform(*cfg.intensity_scale))
        if cfg.noise_std > 0:
            sigma = rng.uniform(0.0, cfg.noise_std)
            x = x + rng.normal(0.0, sigma, x.shape).astype(np.float32)
    return np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y)


def batch_stream(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int,
                 cfg: Augmentation) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless (B, p, p, 1) float32 / (B, p, p) int32 batches: reshuffled passes, augmented.

    One generator consumed in order, so the same seed gives the same batches.
    """
    rng = np.random.default_rng(seed)
    order: list[int] = []
    while True:
        while len(order) < batch_size:
            order.extend(rng.permutation(len(x)).tolist())
        take, order = order[:batch_size], order[batch_size:]
        pairs = [augment_pair(x[i], y[i], rng, cfg) for i in take]
        xb = np.stack([p[0] for p in pairs])[..., None]
        yb = np.stack([p[1] for p in pairs]).astype(np.int32)
        yield xb, yb
