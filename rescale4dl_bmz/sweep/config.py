"""`SweepConfig`: one validated model for a whole sweep, loaded from YAML and mirrored by the CLI.

Unknown keys are errors. Cross-field checks that need only the config run at validation; the
checks that need the data (patch size vs network depth at every factor, image size vs the
coarsest factor) run in `check_against_data` before any work starts.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, field_validator, model_validator

from rescale4dl_bmz.errors import InputError, describe_validation_error
from rescale4dl_bmz.bioimageio.export.metadata import PackageMetadata
from rescale4dl_bmz.factors import DEFAULT_FACTOR_NAMES, Factor, parse_factors
from rescale4dl_bmz.models.config import TrainConfig, TrainingOptions
from rescale4dl_bmz.vocabulary import Criterion, Crop, LabelSource, LabelStyle, Mode, Schedule, Task, TaskRunner

# fields of `TrainConfig` the sweep sets itself, per factor: never under `training`
SWEEP_OWNED_TRAINING = ("factor", "pixel_size_um", "task")


class SweepConfig(BaseModel):
    """Everything a sweep needs. Paths are resolved when loaded from a file (relative to it).

    A field's description is also the help of its `rescale4dl sweep` option (`cli.sweep`)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    # data
    images: Path = Field(description="folder of 2D images (.tif, .tiff, .png)")
    masks: Path = Field(description="folder of instance masks (one integer label per cell, 0 = background), same "
                                    "file names as the images")
    out: Path = Field(description="output folder")
    task: Task = Field(description="semantic: cell interior and edge classes (U-Net); instance: one outline per "
                                   "cell (StarDist)")
    pixel_size_um: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="original pixel size in µm (default: read from the files' "
                                                     "ImageJ/OME metadata; unknown is allowed)")
    channel: int | None = Field(None, ge=0, description="channel to use in multichannel images (0 = first)")
    # ladder
    factors: list[str] = Field(
        default_factory=lambda: list(DEFAULT_FACTOR_NAMES),
        description="pixel sizes to try, as names or numbers, spaces or commas: 'og ds2 ds4', 'og,ds2,ds4' or "
                    "'1,2,4' (ds2 = pixels 2x coarser, up2 = 2x finer, og = original)")
    mode: Mode = Field("aligned", description="rescaling: aligned (default; image and mask on exactly the same "
                                              "grid) or rescale4dl (the original recipe, half a pixel off, for "
                                              "comparison)")
    crop: Crop = "topleft"
    # semantic labels: (b) derive edges at every factor from the rescaled instance mask (default),
    # or (a) derive at og and rescale the 0/1/2 mask, as the paper did
    label_style: LabelStyle = "deepbacs"
    label_source: LabelSource = "per-factor"
    # images held out for evaluation: by name, or a seeded fraction
    test_images: list[str] | None = Field(
        None, description="images (file names without extension) kept aside to test on (default: a quarter of the "
                          "images, chosen at random with a fixed seed)")
    test_fraction: float = Field(0.25, gt=0, lt=1, allow_inf_nan=False)
    seed: int = Field(0, ge=0)
    # training: the options of `TrainConfig` a person chooses; label_style defaults to the sweep's
    training: TrainingOptions = Field(default_factory=TrainingOptions)
    # pretrained model (bioimage.io package): sweep it instead of training
    model: Path | None = Field(None, description="a bioimage.io model package to test at every pixel size instead "
                                                 "of training; --task then defaults to what the package segments")
    # evaluation and decision
    tau_s: float = Field(1.0, gt=0, allow_inf_nan=False,
                         description="seconds to acquire one camera field, for the throughput (default 1)")
    criterion: Criterion = Field("coarsest-equivalent",
                                 description="how to choose the pixel size (default coarsest-equivalent: the "
                                             "coarsest pixel size whose IoU is not significantly worse than the best)")
    tolerance: float | None = Field(
        None, ge=0, le=1, allow_inf_nan=False,
        description="with coarsest-equivalent: the margin of practical equivalence, an IoU difference (default "
                    "0.02): a factor is equivalent when the 95% interval of its paired IoU difference to the best "
                    "stays above minus this margin")
    prune: bool = Field(False, description="skip factors whose cells would be hopelessly small or large for the "
                                           "network (see 'rescale4dl advise')")
    # training schedule: every factor to the full budget, or successive halving (`decide.halving`)
    schedule: Schedule = Field(
        "exhaustive", description="exhaustive (default: every factor trains to the full budget) or halving (all "
                                  "factors train in rounds; after each round but the last, a factor whose validation "
                                  "score is below the round's best by more than --halving-margin stops)")
    halving_rounds: int = Field(3, ge=2, le=8, description="with halving: rounds of training; cumulative budgets "
                                                           "B/2^(R-1), ..., B/2, B (default 3: B/4, B/2, B)")
    halving_margin: float = Field(
        0.05, ge=0, le=1, allow_inf_nan=False,
        description="with halving: how far (validation score units, 0-1) a factor may trail the round's best and "
                    "still continue (default 0.05)")
    # outputs
    export: bool = Field(True, description="export the chosen model as a bioimage.io package")
    # metadata of the exported package: authors/maintainers (name, github_user, orcid), version,
    # license, git_repo, data_name, data_license, data_citation, data_doi
    package: PackageMetadata = Field(default_factory=PackageMetadata)
    # execution
    task_runner: TaskRunner = Field("sequential", description="sequential (default: one factor at a time) or dask "
                                                              "(factors in parallel)")
    dask_address: str | None = Field(None, description="an existing Dask scheduler (implies --task-runner dask)")
    dask_workers: int = Field(2, ge=1, le=64, description="workers of the local Dask cluster (default 2)")

    @field_validator("factors", mode="before")
    @classmethod
    def _factors(cls, v) -> list[str]:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = [v]  # `factors: 2` in YAML: one factor
        if not isinstance(v, (str, list, tuple)) or any(isinstance(f, (bool, dict, list)) for f in v):
            raise ValueError(f"factors must be a list of names or numbers (e.g. [og, ds2, 4]), got {v!r}")
        try:
            return [f.name for f in parse_factors(v)]
        except InputError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("pixel_size_um", "channel", "seed", "tau_s", "test_fraction", "tolerance", "dask_workers",
                     "halving_rounds", "halving_margin", mode="before")
    @classmethod
    def _no_bool(cls, v):
        if isinstance(v, bool):
            raise ValueError(f"expected a number, got {v!r}")
        return v

    @field_validator("training", mode="before")
    @classmethod
    def _no_owned_keys(cls, v):
        owned = set(SWEEP_OWNED_TRAINING) & set(v) if isinstance(v, dict) else set()
        if owned:
            verb = "is" if len(owned) == 1 else "are"
            raise ValueError(f"{', '.join(sorted(owned))} {verb} set by the sweep, not under 'training'")
        return v

    @field_serializer("training")
    def _given_training(self, v: TrainingOptions) -> dict:
        return v.given()  # the record and config.yaml keep what was written, not every default

    @model_validator(mode="after")
    def _consistent(self):
        if self.dask_address and self.task_runner != "dask":
            raise ValueError("dask_address needs task_runner: dask")
        if self.schedule == "halving" and self.model is not None:
            raise ValueError("schedule: halving needs training (it cannot be used with a pretrained model)")
        if self.model is None:
            self.train_config("og")  # raises on options that do not fit the task, before any work
        return self

    # ------------------------------------------------------------------ derived

    @property
    def factor_list(self) -> list[Factor]:
        return parse_factors(self.factors)

    def train_config(self, factor: str, pixel_size_um: float | None = None) -> TrainConfig:
        """The `TrainConfig` of one factor (validated; errors become one ValueError line)."""
        try:
            return TrainConfig(task=self.task, factor=factor, pixel_size_um=pixel_size_um,
                               **{"label_style": self.label_style, **self.training.given()})
        except ValidationError as exc:
            raise ValueError(describe_validation_error(exc, within="training")) from None

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def make_sweep_config(source: str = "configuration", **fields) -> SweepConfig:
    """Validate fields into a `SweepConfig`; any problem becomes one `InputError` naming `source`."""
    try:
        return SweepConfig(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise InputError(f"{source}: invalid sweep configuration: {describe_validation_error(exc)}") from None
    except ValueError as exc:
        raise InputError(f"{source}: invalid sweep configuration: {exc}") from None


def load_sweep_config(path: str | Path, **overrides) -> SweepConfig:
    """Read a YAML sweep config; relative paths are relative to the file; CLI overrides win."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise InputError(f"{path}: config file not found") from None
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read the YAML config ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: the config must be a mapping of keys to values")
    data.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("images", "masks", "out", "model"):
        if data.get(key) is not None and not isinstance(data[key], (str, Path)):
            raise InputError(f"{path}: {key} must be a path, got {data[key]!r}")
        if data.get(key) is not None and not Path(data[key]).is_absolute():
            data[key] = str((path.parent / data[key]).resolve())
    return make_sweep_config(str(path), **data)
