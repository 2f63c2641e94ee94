"""The words the options use, defined once: a `Literal` type for pydantic and type checkers, and
the tuple of its values for argparse choices and error messages (`TASKS == get_args(Task)`).

Light on purpose (no numpy, no pandas): configs, the command line and the computing modules all
import it.
"""

from __future__ import annotations

from typing import Literal, get_args

# what is segmented: cell interior and edge classes (U-Net), or one outline per cell (StarDist)
Task = Literal["semantic", "instance"]
TASKS: tuple[str, ...] = get_args(Task)

# the network that segments each task (an architecture's `kind`)
Network = Literal["unet", "stardist"]
NETWORKS: tuple[str, ...] = get_args(Network)
NETWORK_FOR_TASK: dict[str, str] = {"semantic": "unet", "instance": "stardist"}

# rescaling: image and mask on exactly the same grid, or the original recipe (half a pixel off)
Mode = Literal["aligned", "rescale4dl"]
MODES: tuple[str, ...] = get_args(Mode)

# where an image is cropped to a multiple of the coarsest factor's step
Crop = Literal["topleft", "center"]
CROPS: tuple[str, ...] = get_args(Crop)

# the edge rule turning instance masks into 0/1/2 semantic labels (see `data.labels`)
LabelStyle = Literal["deepbacs", "inner"]
LABEL_STYLES: tuple[str, ...] = get_args(LabelStyle)

# semantic labels derived at every factor from the rescaled instance mask, or at og and rescaled
LabelSource = Literal["per-factor", "from-og"]
LABEL_SOURCES: tuple[str, ...] = get_args(LabelSource)

# the grid a prediction is scored on: the factor's own, or the original one
Grid = Literal["sampled", "native"]
GRIDS: tuple[str, ...] = get_args(Grid)

# how the pixel size is chosen after a sweep (see `decide.select`)
Criterion = Literal["coarsest-equivalent", "max-iou", "iou-x-throughput", "diameter-fidelity"]
CRITERIA: tuple[str, ...] = get_args(Criterion)
DEFAULT_CRITERION: Criterion = "coarsest-equivalent"

# how a sweep's factors run: one at a time, or in parallel on Dask
TaskRunner = Literal["sequential", "dask"]
TASK_RUNNERS: tuple[str, ...] = get_args(TaskRunner)

# what a sweep does when its output folder holds a different run
OnChange = Literal["refuse", "restart", "extend"]
ON_CHANGE: tuple[str, ...] = get_args(OnChange)

# how a sweep spends its training: every factor to the full budget, or successive halving (factors
# clearly behind on validation stop early; see `decide.halving`)
Schedule = Literal["exhaustive", "halving"]
SCHEDULES: tuple[str, ...] = get_args(Schedule)
