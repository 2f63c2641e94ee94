"""`PackageInfo`: what a sweep needs to know about a bioimage.io model package (see `inspection`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PackageInfo:
    """What a sweep needs to know about a bioimage.io model package (filled by `inspect_package`)."""

    path: str
    name: str
    format_version: str                  # as written in the package
    updated_from: str | None             # "0.4.x" when bioimageio.spec updated it to 0.5
    input_id: str
    input_axes: tuple[str, ...]          # e.g. ("batch", "y", "x", "channel")
    input_2d_single_channel: bool        # always True for an inspected package (else InputError)
    output_id: str
    output_axes: tuple[str, ...]
    output_kind: str                     # "semantic" | "instance"
    output_form: str                     # "probabilities" | "class_map" | "labels"
    n_classes: int | None                # semantic only
    class_names: tuple[str, ...] | None
    task: str                            # the sweep task the output implies
    preprocessing: tuple[str, ...]
    postprocessing: tuple[str, ...]
    weight_formats: tuple[str, ...]      # present in the package
    runnable_formats: tuple[str, ...]    # of those, what this environment runs
    weight_format: str                   # the one `load_package` uses
    frameworks: dict[str, str]           # weight format -> what it needs (and whether installed)
    pixel_size_um: float | None          # the model's pixel size in µm (None: not declared)
    pixel_size_source: str | None        # "axes" | "config.rescale4dl" | "config.deepimagej" | None
    axis_scale: dict[str, float]         # input space axes' `scale`
    axis_unit: str | None                # input space axes' `unit`
    tiling: dict[str, dict]              # per space axis: min/step (or size) and halo, in input pixels
    notes: tuple[str, ...] = field(default=())

    @property
    def space_axes(self) -> tuple[str, str]:
        return tuple(self.tiling)  # type: ignore[return-value]

    def as_dict(self) -> dict:
        """Plain JSON types (tuples become lists)."""
        def plain(v):
            if isinstance(v, dict):
                return {str(k): plain(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [plain(x) for x in v]
            return v
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def describe(self) -> str:
        """One line for logs and reports."""
        px = f"{self.pixel_size_um:.4g} µm" if self.pixel_size_um is not None else "no pixel size"
        classes = f"{self.n_classes}-class " if self.n_classes else ""
        what = f"{classes}{self.output_form.replace('_', ' ')}" if self.output_kind == "semantic" else "instance labels"
        return f"{self.name} ({self.task}: {what}; {px}; weights {self.weight_format})"
