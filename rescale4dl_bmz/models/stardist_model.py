"""StarDist 2D: configuration from our `TrainConfig`, model folder creation and loading.

StarDist prints progress to stdout; loading is silenced (logged at debug level) so the CLI
output stays readable.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

from rescale4dl_bmz.models import require_tensorflow_backend
from rescale4dl_bmz.models.config import TrainConfig

log = logging.getLogger(__name__)

STARDIST_DIR = "stardist"


def stardist_config(cfg: TrainConfig, patch: int, epochs: int, steps_per_epoch: int):
    """A StarDist `Config2D` for a resolved `TrainConfig` (we normalise inputs ourselves)."""
    require_tensorflow_backend()
    from stardist.models import Config2D

    arch = cfg.architecture
    return Config2D(
        n_rays=arch.n_rays, grid=(arch.grid, arch.grid), n_channel_in=1,
        unet_n_depth=arch.depth, unet_n_filter_base=arch.base_filters, net_conv_after_unet=arch.conv_after_unet,
        train_patch_size=(patch, patch), train_batch_size=cfg.batch_size, train_learning_rate=cfg.learning_rate,
        train_epochs=epochs, train_steps_per_epoch=steps_per_epoch, train_foreground_only=cfg.foreground_only,
        train_reduce_lr={"factor": cfg.reduce_lr_factor, "patience": cfg.reduce_lr_patience,
                         "min_delta": 0, "min_lr": cfg.min_learning_rate, "verbose": False},
        train_tensorboard=False, use_gpu=False,
    )


def new_stardist(config, basedir: Path):
    """A fresh StarDist2D in basedir/stardist (writes its config.json there)."""
    from stardist.models import StarDist2D

    with quiet():
        return StarDist2D(config, name=STARDIST_DIR, basedir=str(basedir))


def load_stardist(folder: Path):
    """The StarDist2D saved in folder/stardist, best weights and optimised thresholds loaded."""
    require_tensorflow_backend()
    from stardist.models import StarDist2D

    with quiet():
        return StarDist2D(None, name=STARDIST_DIR, basedir=str(folder))


def stardist_rf_estimate(model) -> int:
    """StarDist's own empirical RF (impulse response of the network), widest axis in px."""
    with quiet():
        extent = model._compute_receptive_field()
    return int(max(lo + hi + 1 for lo, hi in extent))


@contextlib.contextmanager
def quiet(stderr: bool = False):
    """Send StarDist's prints (and, with `stderr`, its progress bars) to the debug log."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), (contextlib.redirect_stderr(buf) if stderr else contextlib.nullcontext()):
        yield
    if buf.getvalue().strip():
        log.debug("stardist: %s", buf.getvalue().strip())
