"""`SweepConfig`: one validated model for a whole sweep, loaded from YAML and mirrored by the CLI.

Unknown keys are errors. Cross-field checks that need only the config run at validation; the
checks that need the data (patch size vs network depth at every factor, image size vs the
coarsest factor) run in `check_against_data` before any work starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.bioimageio.export.metadata import PackageMetadata
from rescale4dl_bmz.factors import DEFAULT_FACTOR_NAMES, Factor, parse_factors

CRITERIA = ("coarsest-equivalent", "max-iou", "iou-x-throughput", "diameter-fidelity")


class SweepConfig(BaseModel):
    """Everything a sweep needs. Paths are resolved when loaded from a file (relative to it)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    # data
    images: Path
    masks: Path
    out: Path
    task: Literal["semantic", "instance"]
    pixel_size_um: float | None = Field(None, gt=0, allow_inf_nan=False, description="overrides the files' metadata (µm)")
    channel: int | None = Field(None, ge=0)
    # ladder
    factors: list[str] = Field(default_factory=lambda: list(DEFAULT_FACTOR_NAMES))
    mode: Literal["aligned", "rescale4dl"] = "aligned"
    crop: Literal["topleft", "center"] = "topleft"
    # semantic labels: (b) derive edges at every factor from the rescaled instance mask (default),
    # or (a) derive at og and rescale the 0/1/2 mask, as the paper did
    label_style: Literal["deepbacs", "inner"] = "deepbacs"
    label_source: Literal["per-factor", "from-og"] = "per-factor"
    # images held out for evaluation: by name, or a seeded fraction
    test_images: list[str] | None = None
    test_fraction: float = Field(0.25, gt=0, lt=1, allow_inf_nan=False)
    seed: int = Field(0, ge=0)
    # training: any field of rescale4dl_bmz.models.TrainConfig except task/factor/pixel size
    training: dict[str, Any] = Field(default_factory=dict)
    # pretrained model (bioimage.io package): sweep it instead of training
    model: Path | None = None
    # evaluation and decision
    tau_s: float = Field(1.0, gt=0, allow_inf_nan=False, description="time to acquire one field of view (s)")
    criterion: Literal[CRITERIA] = "coarsest-equivalent"  # type: ignore[valid-type]
    tolerance: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    prune: bool = False
    # outputs
    export: bool = True
    # metadata of the exported package: authors/maintainers (name, github_user, orcid), version,
    # license, git_repo, data_name, data_license, data_citation, data_doi
    package: PackageMetadata = Field(default_factory=PackageMetadata)
    # execution
    task_runner: Literal["sequential", "dask"] = "sequential"
    dask_address: str | None = None
    dask_workers: int = Field(2, ge=1, le=64)

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
                     mode="before")
    @classmethod
    def _no_bool(cls, v):
        if isinstance(v, bool):
            raise ValueError(f"expected a number, got {v!r}")
        return v

    @field_validator("training")
    @classmethod
    def _no_owned_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        owned = {"task", "factor", "pixel_size_um"} & set(v)
        if owned:
            raise ValueError(f"{', '.join(sorted(owned))} are set by the sweep, not under 'training'")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        if self.dask_address and self.task_runner != "dask":
            raise ValueError("dask_address needs task_runner: dask")
        if self.model is None:
            self.train_config("og")  # raises on invalid training options, before any work
        return self

    # ------------------------------------------------------------------ derived

    @property
    def factor_list(self) -> list[Factor]:
        return parse_factors(self.factors)

    def train_config(self, factor: str, pixel_size_um: float | None = None):
        """The `TrainConfig` of one factor (validated; errors become one ValueError line)."""
        from rescale4dl_bmz.models.config import TrainConfig

        try:
            return TrainConfig(task=self.task, factor=factor, pixel_size_um=pixel_size_um,
                               label_style=self.training.get("label_style", self.label_style),
                               **{k: v for k, v in self.training.items() if k != "label_style"})
        except ValidationError as exc:
            raise ValueError("training: " + _describe(exc)) from None

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _describe(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors())


def make_sweep_config(source: str = "configuration", **fields) -> SweepConfig:
    """Validate fields into a `SweepConfig`; any problem becomes one `InputError` naming `source`."""
    try:
        return SweepConfig(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise InputError(f"{source}: invalid sweep configuration: {_describe(exc)}") from None
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
