"""Training configuration: one validated pydantic model per concern, unknown keys are errors.

`TrainingOptions` are the choices a person makes (a sweep's `training:` section); `TrainConfig`
adds what the data decide (task, factor, pixel size), holds everything a training run needs and
is saved, fully resolved, as the model folder's `config.json`. Fields left `None` take the
paper's value for the task when the run starts (`with_defaults`): U-Net batch 5, lr 1e-4,
patches 512 px at og; StarDist batch 2, lr 3e-4, patches 2048 px at og; 1000 epochs for both.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rescale4dl_bmz.errors import InputError, describe_validation_error
from rescale4dl_bmz.factors import parse_factor
from rescale4dl_bmz.vocabulary import NETWORK_FOR_TASK, LabelStyle, Task


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class UNetArch(_Strict):
    """ZeroCostDL4Mic multilabel U-Net. `depth` = pooling steps; filters base·2^k at level k."""

    kind: Literal["unet"] = "unet"
    depth: int = Field(2, ge=1, le=5)
    base_filters: int = Field(64, ge=1, le=512, description="network width: filters of the first layer")
    n_labels: int = Field(3, ge=2, le=255)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    dropout_from_level: int = Field(3, ge=0, description="levels >= this get dropout (512/1024 filters at base 64)")


class StarDistArch(_Strict):
    """StarDist 2D with its U-Net backbone (csbdeep `unet_block`)."""

    kind: Literal["stardist"] = "stardist"
    n_rays: int = Field(32, ge=4, le=256)
    grid: int = Field(2, ge=1, le=8)
    depth: int = Field(3, ge=1, le=5)
    base_filters: int = Field(32, ge=1, le=512, description="network width: filters of the first layer")
    conv_after_unet: int = Field(128, ge=0, le=1024)

    @field_validator("grid")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v & (v - 1):
            raise ValueError(f"grid must be 1, 2, 4 or 8, got {v}")
        return v


Architecture = Annotated[Union[UNetArch, StarDistArch], Field(discriminator="kind")]


class Normalization(_Strict):
    """Per-image percentile normalisation: (x - p_low) / (p_high - p_low)."""

    low: float = Field(1.0, ge=0.0, le=100.0)
    high: float = Field(99.8, ge=0.0, le=100.0)

    @model_validator(mode="after")
    def _ordered(self):
        if not self.low < self.high:
            raise ValueError(f"normalization low percentile ({self.low}) must be below high ({self.high})")
        return self


class Augmentation(_Strict):
    """Random flips, 90° rotations, intensity scaling and Gaussian noise (on normalised patches)."""

    enabled: bool = True
    flips: bool = True
    rot90: bool = True
    intensity_scale: tuple[float, float] = (0.8, 1.2)
    noise_std: float = Field(0.03, ge=0.0, le=1.0, description="noise sigma is drawn from U(0, noise_std)")

    @field_validator("intensity_scale")
    @classmethod
    def _scale_range(cls, v):
        if not 0 < v[0] <= v[1]:
            raise ValueError(f"intensity_scale must be (low, high) with 0 < low <= high, got {v}")
        return v


class TrainingOptions(_Strict):
    """The training options a person chooses: every `TrainConfig` field except the three the data
    decide (task, factor, pixel size). A sweep's `training:` section is one of these."""

    architecture: Architecture | None = None  # None: the task's network (`NETWORK_FOR_TASK`)
    # patch size: explicit side in px at this factor, or the rule base / scale capped at max
    patch_size: int | None = Field(None, ge=8)
    base_patch_size: int | None = Field(None, ge=8, description="patch side at og for the same-FOV rule")
    max_patch_size: int | None = Field(None, ge=8)
    # patches kept for the U-Net: at least this share of foreground pixels; "auto" = the paper's
    # 5 %, lowered on sparse data to half the data's own foreground share (see patches.auto_min_foreground)
    min_foreground_fraction: Annotated[float, Field(ge=0.0, le=1.0)] | Literal["auto"] = Field(
        "auto", description="U-Net: train on patches with at least this share of object pixels. Default 'auto': "
                            "the paper's 0.05, lowered to half the data's own object share on sparse data")
    validation_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    # optimisation and budget
    batch_size: int | None = Field(None, ge=1)
    learning_rate: float | None = Field(None, gt=0.0, le=1.0)
    epochs: int | None = Field(None, ge=1, description="training length in passes over the training patches")
    steps: int | None = Field(None, ge=1, description="training length in optimiser steps (instead of --epochs)")
    steps_per_epoch: int | None = Field(None, ge=1, description="default: one pass over the training patches")
    reduce_lr_factor: float = Field(0.5, gt=0.0, lt=1.0)
    reduce_lr_patience: int = Field(20, ge=1)
    min_learning_rate: float = Field(1e-6, ge=0.0)
    early_stopping_patience: int | None = Field(None, ge=1)
    normalization: Normalization = Normalization()
    augmentation: Augmentation = Augmentation()
    # labels
    label_style: LabelStyle = "deepbacs"
    masks_are_semantic: bool = False
    # StarDist thresholds search (on the validation split)
    nms_thresholds: tuple[float, ...] = (0.3, 0.4, 0.5)
    foreground_only: float = Field(0.9, ge=0.0, le=1.0, description="StarDist: share of patches centred on objects")
    # reproducibility
    seed: int = Field(0, ge=0)
    deterministic: bool | None = Field(
        None, description="TensorFlow op determinism while training; None: on without a GPU, off with one "
                          "(some GPU kernels have no deterministic version)")

    @model_validator(mode="after")
    def _budget_and_patch(self):
        if self.epochs is not None and self.steps is not None:
            raise ValueError("give a budget in epochs or in steps, not both")
        arch = self.architecture
        if arch is not None and self.patch_size is not None and self.patch_size % divisor(arch):
            raise ValueError(f"patch_size {self.patch_size} is not divisible by {divisor(arch)} "
                             f"(2^depth{' x grid' if arch.kind == 'stardist' else ''})")
        return self

    def given(self) -> dict:
        """The options set explicitly, as JSON data (what a person wrote; the architecture keeps
        its `kind`): a sweep's record and config.yaml hold these, not every default."""
        data = self.model_dump(mode="json", exclude_unset=True)
        if self.architecture is not None:
            data["architecture"] = {"kind": self.architecture.kind, **data.get("architecture", {})}
        return data


def divisor(arch: UNetArch | StarDistArch) -> int:
    """Patch and tile sides must be multiples of this (2^depth, times the StarDist grid)."""
    return 2 ** arch.depth * (arch.grid if arch.kind == "stardist" else 1)


class TrainConfig(TrainingOptions):
    """Everything one training run needs; saved resolved as MODEL/config.json."""

    task: Task
    architecture: Architecture = None  # type: ignore[assignment]  # default follows the task
    factor: str = "og"
    pixel_size_um: float | None = Field(None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _default_architecture(cls, data):
        if isinstance(data, dict) and data.get("architecture") is None:
            data = dict(data)
            data["architecture"] = {"kind": NETWORK_FOR_TASK.get(data.get("task"), "unet")}
        return data

    @field_validator("factor")
    @classmethod
    def _factor_name(cls, v: str) -> str:
        try:
            return parse_factor(v).name
        except InputError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _fits_the_task(self):
        arch, network = self.architecture, NETWORK_FOR_TASK[self.task]
        if arch.kind != network:
            raise ValueError(f"task {self.task!r} needs the {network!r} architecture")
        if self.task == "instance" and self.masks_are_semantic:
            raise ValueError("masks_are_semantic applies to the semantic task only")
        if self.task == "semantic" and not self.masks_are_semantic and arch.n_labels != 3:
            raise ValueError(f"labels derived from instance masks are 0/1/2: n_labels must be 3, not {arch.n_labels}")
        return self

    # ------------------------------------------------------------------ derived values

    @property
    def divisor(self) -> int:
        """Patch and tile sides must be multiples of this (2^depth, times the StarDist grid)."""
        return divisor(self.architecture)

    @property
    def is_unet(self) -> bool:
        return self.architecture.kind == "unet"

    def with_defaults(self) -> "TrainConfig":
        """A copy with the paper's per-task values filled in (patch size is left to the data)."""
        unet = self.is_unet
        fill = {
            "batch_size": 5 if unet else 2,
            "learning_rate": 1e-4 if unet else 3e-4,
            "base_patch_size": 512 if unet else 2048,
            "max_patch_size": 512 if unet else 2048,
        }
        updates = {k: v for k, v in fill.items() if getattr(self, k) is None}
        if self.epochs is None and self.steps is None:
            updates["epochs"] = 1000
        return self.model_copy(update=updates)


def make_config(task: str, **options) -> TrainConfig:
    """Build a `TrainConfig`, turning validation errors into one readable `InputError`."""
    try:
        return TrainConfig(task=task, **{k: v for k, v in options.items() if v is not None})
    except ValidationError as exc:
        raise InputError(f"invalid training configuration: {describe_validation_error(exc)}") from None


def config_from_dict(data: dict, source: str = "configuration") -> TrainConfig:
    """Validate a dict (e.g. a loaded config.json); errors name `source`."""
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{source}: invalid training configuration: {describe_validation_error(exc)}") from None
