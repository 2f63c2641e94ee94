"""Cover images of a package, 2:1 as the spec asks: the test image beside its predicted
segmentation at the model's pixel size, and (when the sweep drew it) the IoU curve on a 2:1 canvas.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WIDTH_IN, HEIGHT_IN, DPI = 8.0, 4.0, 100  # 800 x 400 px


def segmentation_of(test_output: np.ndarray, task: str) -> np.ndarray:
    """Instance labels shown on the cover: the package's labels, or the semantic output's instances."""
    if task == "instance":
        return np.asarray(test_output[0, ..., 0])
    from rescale4dl_bmz.data.labels import semantic_to_instances

    return semantic_to_instances(np.asarray(test_output[0]).argmax(-1).astype(np.uint8))


def _label_colours(labels: np.ndarray) -> np.ndarray:
    """RGBA image: each object a distinct colour (golden-angle hues), background transparent."""
    from matplotlib.colors import hsv_to_rgb

    n = int(labels.max())
    hues = (np.arange(n + 1) * 0.618034) % 1.0
    rgb = hsv_to_rgb(np.stack([hues, np.full(n + 1, 0.75), np.full(n + 1, 1.0)], -1))
    rgba = np.concatenate([rgb, np.full((n + 1, 1), 0.55)], -1)
    rgba[0] = 0
    return rgba[labels]


def write_segmentation_cover(path: Path, image: np.ndarray, labels: np.ndarray, title: str) -> Path:
    """800 x 400 PNG: the image (left) and the image with its labels overlaid (right)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, facecolor="black")
    FigureCanvasAgg(fig)
    lo, hi = np.percentile(image, [1, 99.8])
    for i, overlay in enumerate((False, True)):
        ax = fig.add_axes((i * 0.5, 0, 0.5, 0.92))
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        if overlay:
            ax.imshow(_label_colours(labels), interpolation="nearest")
        ax.set_axis_off()
    fig.text(0.5, 0.96, title, color="white", ha="center", va="center", fontsize=11)
    fig.savefig(path, facecolor=fig.get_facecolor())
    return path


def write_figure_cover(path: Path, figure: Path) -> Path:
    """800 x 400 PNG with the sweep figure fitted in the middle (white margins)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.image import imread

    img = imread(figure)
    h, w = img.shape[:2]
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    box_w = min(1.0, (w / h) * HEIGHT_IN / WIDTH_IN)
    box_h = box_w * (h / w) * WIDTH_IN / HEIGHT_IN
    ax = fig.add_axes(((1 - box_w) / 2, (1 - box_h) / 2, box_w, box_h))
    ax.imshow(img, interpolation="antialiased")
    ax.set_axis_off()
    fig.savefig(path, facecolor="white")
    return path


def write_covers(folder: Path, figure: Path | None, test_input: np.ndarray, test_output: np.ndarray, task: str,
                 title: str) -> list[Path]:
    """cover.png (image and segmentation) and, with a sweep figure, cover_iou.png."""
    covers = [write_segmentation_cover(folder / "cover.png", np.asarray(test_input[0, ..., 0], np.float32),
                                       segmentation_of(test_output, task), title)]
    if figure is not None:
        covers.append(write_figure_cover(folder / "cover_iou.png", figure))
    return covers
