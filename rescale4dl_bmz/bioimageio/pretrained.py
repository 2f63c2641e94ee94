"""Sweep a published model: inspect and run any bioimage.io model package, without training.

``inspect_package(path) -> PackageInfo`` validates a package (a ``.zip``, an ``rdf.yaml`` /
``bioimageio.yaml`` file, or the folder holding one) offline and reports what a sweep needs:
the task its output implies, its input axes, the weight format that will run here, the pixel
size it declares and its tile constraints. Whatever a user can fix (not a package, does not
validate, a 3D or multichannel input, an output that is neither classes nor labels, weights
that no installed framework runs) raises `InputError` naming the package, before any data is
rescaled. It imports bioimageio.spec, not TensorFlow.

``load_package(path) -> PackagedModel`` loads the weights once and keeps one bioimageio.core
prediction pipeline for every image. ``PackagedModel.predict(image)`` keeps the contract of
``models.load_model(folder).predict``: a raw 2D image in; semantic -> uint8 class indices
(0/1/2 for our own packages), instance -> uint8/16/32 instance labels; same shape.

For the sweep
-------------
``prepare``: ``info = inspect_package(config.model)`` (refuses a bad package before any rescaling;
``info.task`` is the sweep's task, ``info.pixel_size_um`` the package's own pixel size or None).
``stage_predict``: ``model = load_package(config.model)`` once per factor, ``model.predict(image)``
for every image, ``model.close()`` at the end (or ``with load_package(...) as model:``).

Offline
-------
Validation runs with ``perform_io_checks=False`` and ``known_files`` holding the SHA-256 of
every package file the description names and every URL it mentions (without hash). The spec
therefore checks the presence and hash of each local file, and never opens a URL or looks up
a GitHub user. Weights that are only a URL are refused (download the package instead).
Spec 0.4 packages are updated to 0.5 by bioimageio.spec; if that fails the error says so.

Output kinds
------------
- semantic, "probabilities": a float output with a channel axis of 2..16 classes (channel
  index = class, channel 0 = background); ``predict`` takes the argmax.
- semantic, "class_map": one integer channel declared as a few classes (nominal values, a
  small range, binarize post-processing, or tagged semantic).
- instance, "labels": StarDist or Cellpose post-processing, or one integer channel without a
  small declared range (a label image).
Anything else (a single float channel, an image without space axes, raw StarDist
probability/distances without the spec's post-processing, several outputs) is refused.

Prediction
----------
bioimageio.core's own blocking cannot stitch outputs sampled on a coarser grid than the input
(StarDist's probability/distance maps at ``grid``), so tiling is done here, around the
package's pipeline:
1. the whole image is one sample; the package's preprocessing runs on it, so per-sample
   statistics (e.g. scale_range percentiles) come from the image, not from padding;
2. the preprocessed image is padded with the input's pad mode (symmetric by default) by the
   input halo on every side and at the end up to the axis size rule (min + k*step), and cut
   into tiles of at most ``tile_size`` inner pixels; each tile runs through the model alone;
3. the tiles' inner parts are stitched at the output's own sampling, cropped to the image, and
   the package's post-processing runs once on the whole (StarDist's NMS sees every object once);
4. the output is cropped to the image and turned into labels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import math
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rescale4dl_bmz.errors import InputError

RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
MAX_CLASSES = 16
DEFAULT_TILE_SIZE = 1024

# weight format -> Python modules that must be importable to run it (through bioimageio.core)
FRAMEWORKS: dict[str, tuple[str, ...]] = {
    "keras_v3": ("keras", "tensorflow"),
    "keras_hdf5": ("keras", "tensorflow"),
    "tensorflow_saved_model_bundle": ("tensorflow",),
    "onnx": ("onnxruntime",),
    "torchscript": ("torch",),
    "pytorch_state_dict": ("torch",),
    "tensorflow_js": (),  # bioimageio.core has no runner for it
}
FRAMEWORK_NAMES = {"keras": "Keras", "tensorflow": "TensorFlow", "onnxruntime": "ONNX Runtime",
                   "torch": "PyTorch (torch)", "stardist": "stardist", "cellpose": "cellpose"}
# preferred first: Keras runs in-process without unpacking; torch formats last (not installed here)
WEIGHT_PRIORITY = ("keras_v3", "keras_hdf5", "tensorflow_saved_model_bundle", "onnx", "torchscript",
                   "pytorch_state_dict")
POSTPROCESSING_NEEDS = {"stardist_postprocessing": "stardist", "cellpose_flow_dynamics": "cellpose"}
INSTANCE_POSTPROCESSING = tuple(POSTPROCESSING_NEEDS)

# spec 0.5 space units -> micrometres
UNIT_UM = {
    "yoctometer": 1e-18, "zeptometer": 1e-15, "attometer": 1e-12, "femtometer": 1e-9, "picometer": 1e-6,
    "angstrom": 1e-4, "nanometer": 1e-3, "micrometer": 1.0, "millimeter": 1e3, "centimeter": 1e4,
    "decimeter": 1e5, "meter": 1e6, "hectometer": 1e8, "kilometer": 1e9, "megameter": 1e12,
    "gigameter": 1e15, "terameter": 1e18, "petameter": 1e21, "exameter": 1e24, "zettameter": 1e27,
    "yottameter": 1e30, "inch": 25400.0, "foot": 304800.0, "yard": 914400.0, "mile": 1.609344e9,
    "parsec": 3.0856775814913673e22,
}
_TEXT_UNITS = {"µm": 1.0, "um": 1.0, "μm": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
               "micrometers": 1.0, "nm": 1e-3, "nanometer": 1e-3, "nanometers": 1e-3, "mm": 1e3}


@dataclass(frozen=True)
class PackageInfo:
    """What a sweep needs to know about a bioimage.io model package (see the module docstring)."""

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


# ----------------------------------------------------------------------------- reading the package

@dataclass
class _Source:
    path: Path          # what the user gave
    load: Path          # what bioimageio.spec loads (zip or yaml file)
    rdf: dict
    known: dict         # known_files for bioimageio.spec


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def _references(rdf: dict):
    """(key as bioimageio.spec will look it up, relative file path or None for a URL) of every string
    that may name a file; "file.py:Callable" (spec 0.4 architectures) names file.py."""
    for s in set(_strings(rdf)):
        if s.startswith(("http://", "https://")):
            yield s, None
            continue
        for key in {s, s.rsplit(":", 1)[0]}:
            rel = key[2:] if key.startswith("./") else key
            if rel:
                yield key, rel


def _sha256(chunks) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()


def _parse_rdf(path: Path, text: bytes | str) -> dict:
    import yaml

    try:
        rdf = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: the package description is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(rdf, dict):
        raise InputError(f"{path}: the package description is not a YAML mapping")
    kind = rdf.get("type")
    if kind != "model":
        raise InputError(f"{path}: a bioimage.io {kind or 'untyped'} description, not a model")
    return rdf


def _read_source(path: str | Path) -> _Source:
    """Find and parse the description; hash the files it names (no network, nothing written)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"model package {p} does not exist")
    known: dict[str, str | None] = {}
    if p.is_dir() or p.suffix.lower() in (".yaml", ".yml"):
        rdf_path = next((p / n for n in RDF_NAMES if (p / n).is_file()), None) if p.is_dir() else p
        if rdf_path is None:
            raise InputError(f"{p}: not a bioimage.io package folder (no {' or '.join(RDF_NAMES)} inside)")
        rdf = _parse_rdf(p, rdf_path.read_bytes())
        root = rdf_path.parent
        for key, rel in _references(rdf):
            if rel is None:
                known[key] = None
            elif len(rel) < 1000 and not rel.startswith("/") and (root / rel).is_file():
                with open(root / rel, "rb") as fh:
                    known[key] = _sha256(iter(lambda: fh.read(1 << 20), b""))
        return _Source(p, rdf_path, rdf, known)
    if not zipfile.is_zipfile(p):
        raise InputError(f"{p}: not a bioimage.io package (a .zip file, or a folder or rdf.yaml file); "
                         "the file is not a readable zip archive")
    try:
        with zipfile.ZipFile(p) as zf:
            names = set(zf.namelist())
            rdf_name = next((n for n in RDF_NAMES if n in names), None)
            if rdf_name is None:
                raise InputError(f"{p}: not a bioimage.io package (no {' or '.join(RDF_NAMES)} at the top of the zip)")
            rdf = _parse_rdf(p, zf.read(rdf_name))
            for key, rel in _references(rdf):
                if rel is None:
                    known[key] = None
                elif rel in names and rel != rdf_name:
                    with zf.open(rel) as fh:
                        known[key] = _sha256(iter(lambda: fh.read(1 << 20), b""))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:  # ValueError: zlib/CRC trouble
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{p}: the zip archive is damaged ({exc})") from None
    return _Source(p, p, rdf, known)


def _errors(descr, limit: int = 6) -> str:
    out = []
    summary = getattr(descr, "validation_summary", None)
    for d in getattr(summary, "details", []) or []:
        for e in d.errors:
            loc = ".".join(str(x) for x in e.loc)
            msg = (e.msg or "").strip().splitlines()[0] if e.msg else str(e.type)
            msg = msg.replace("not found in `known_files`", "is missing from the package")
            msg = msg if len(msg) <= 300 else msg[:297] + "..."
            out.append(f"{loc}: {msg}" if loc else msg)
    if not out:
        return "invalid description"
    more = f" (and {len(out) - limit} more)" if len(out) > limit else ""
    return "; ".join(out[:limit]) + more


def _load_description(src: _Source):
    """The spec 0.5 ModelDescr (0.4 updated); InputError when it does not validate."""
    from bioimageio.spec import ValidationContext, load_description
    from bioimageio.spec.model import v0_4, v0_5

    declared = str(src.rdf.get("format_version", "?"))

    def load(fmt):
        with ValidationContext(log_warnings=False):
            return load_description(src.load, format_version=fmt, perform_io_checks=False,
                                    known_files=dict(src.known))
    try:
        descr = load("latest")
    except InputError:
        raise
    except Exception as exc:  # bioimageio.spec raises for some broken inputs instead of returning InvalidDescr
        raise InputError(f"{src.path}: the package cannot be read by bioimageio.spec "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if isinstance(descr, v0_5.ModelDescr):
        return descr
    if declared.startswith("0.4"):
        try:
            old = load("discover")
        except Exception:
            old = None
        if isinstance(old, v0_4.ModelDescr):
            raise InputError(f"{src.path}: a valid spec {declared} model, but bioimageio.spec could not update it "
                             f"to format 0.5: {_errors(descr)}")
    raise InputError(f"{src.path}: the package does not validate as a bioimage.io model "
                     f"(format_version {declared}): {_errors(descr)}")


# ----------------------------------------------------------------------------- inspecting

def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _axis_size(a):
    """(kind, values) of an axis size: ("fixed", n) | ("param", min, step) | ("ref", tensor, axis, offset) | ..."""
    from bioimageio.spec.model import v0_5

    s = a.size
    if isinstance(s, int):
        return ("fixed", int(s))
    if isinstance(s, v0_5.ParameterizedSize):
        return ("param", int(s.min), int(s.step))
    if isinstance(s, v0_5.SizeReference):
        return ("ref", str(s.tensor_id), str(s.axis_id), int(s.offset))
    return ("data-dependent",)


def _check_input(path: Path, ipt) -> list:
    """Space axes of a 2D single-channel input; InputError for anything a 2D grey image cannot feed."""
    axes = list(ipt.axes)
    ids = [str(a.id) for a in axes]
    space = [a for a in axes if a.type == "space"]
    channels = [a for a in axes if a.type == "channel"]
    if len(space) != 2 or any(str(a.id) == "z" for a in space):
        if len(space) == 3 or any(str(a.id) == "z" for a in space):
            raise InputError(f"{path}: the model is 3D (input axes {', '.join(ids)}); it needs image stacks with a z "
                             "axis, and the data are 2D images (y, x)")
        raise InputError(f"{path}: the model's input has {len(space)} space axes ({', '.join(ids)}); "
                         "the data are 2D images (y, x)")
    n_channels = 1
    for c in channels:
        n_channels *= len(c.channel_names)
    if n_channels != 1:
        names = ", ".join(str(n) for c in channels for n in c.channel_names)
        raise InputError(f"{path}: the model needs {n_channels} input channels ({names}); the data are "
                         "single-channel 2D images")
    for a in axes:
        if a.type in ("time", "index"):
            size = _axis_size(a)
            if size != ("fixed", 1):
                raise InputError(f"{path}: the model's input has a {a.type} axis '{a.id}' (size {size[1:] or '?'}); "
                                 "the data are single 2D images")
        if a.type == "batch" and getattr(a, "size", None) not in (None, 1):
            raise InputError(f"{path}: the model needs a batch of {a.size} images at once; unsupported")
    for a in space:
        kind = _axis_size(a)[0]
        if kind not in ("fixed", "param"):
            raise InputError(f"{path}: the input axis '{a.id}' has a size defined by another tensor ({kind}); "
                             "unsupported for a single-input model")
    return space


def _data_descr(tensor):
    data = tensor.data
    return data[0] if isinstance(data, (list, tuple)) else data


def _classify_output(path: Path, out, tags: set[str]) -> tuple[str, str, int | None, tuple[str, ...] | None, list[str]]:
    """(kind, form, n_classes, class_names, notes) of the output, or InputError saying what it is."""
    post = [str(p.id) for p in out.postprocessing]
    channels = [a for a in out.axes if a.type == "channel"]
    names = tuple(str(n) for c in channels for n in c.channel_names)
    n_ch = len(names) if channels else 1
    data = _data_descr(out)
    dtype = str(getattr(data, "type", "float32"))
    is_int = dtype.startswith(("int", "uint")) or dtype == "bool"
    notes: list[str] = []
    what = f"{n_ch} {'integer' if is_int else 'float'} channel{'s' if n_ch != 1 else ''} ({dtype})"
    if any(p in INSTANCE_POSTPROCESSING for p in post):
        return "instance", "labels", None, None, notes
    if n_ch > 1:
        if is_int:
            raise InputError(f"{path}: the model produces {what}; expected one class map, one label image or "
                             "class probabilities")
        if "stardist" in tags:
            raise InputError(f"{path}: the model produces {what}: StarDist's raw object probability and ray "
                             "distances without the spec's stardist_postprocessing; export it with bioimage.io "
                             "spec 0.5 StarDist post-processing (labels) to sweep it")
        if n_ch > MAX_CLASSES:
            raise InputError(f"{path}: the model produces {what}; more than {MAX_CLASSES} channels are not class "
                             "probabilities of a segmentation")
        first = names[0].lower() if names else ""
        if names and not any(k in first for k in ("background", "bg", "channel0", "class0", "c0", "0")):
            notes.append(f"channel 0 ('{names[0]}') is taken as background; classes are channel indices")
        return "semantic", "probabilities", n_ch, names or None, notes
    if "binarize" in post or dtype == "bool":
        return "semantic", "class_map", 2, ("background", "foreground"), notes
    if is_int:
        values = getattr(data, "values", None)
        if values:
            n = len(values)
            if n <= MAX_CLASSES:
                return "semantic", "class_map", n, tuple(str(v) for v in values), notes
        rng = getattr(data, "range", (None, None)) or (None, None)
        if rng[1] is not None and rng[1] < MAX_CLASSES:
            return "semantic", "class_map", int(rng[1]) + 1, None, notes
        if tags & {"semantic-segmentation", "semantic"} and not tags & {"instance-segmentation", "instance"}:
            notes.append("integer output without a declared range; taken as a class map from its tags")
            return "semantic", "class_map", None, None, notes
        return "instance", "labels", None, None, notes
    raise InputError(f"{path}: the model produces {what}: a probability, distance or restored-intensity map, "
                     "not class probabilities (a channel per class), a class map or a label image")


def _check_output(path: Path, descr, space_in: list) -> tuple:
    if len(descr.outputs) != 1:
        ids = ", ".join(str(t.id) for t in descr.outputs)
        raise InputError(f"{path}: the model produces {len(descr.outputs)} outputs ({ids}); a sweep needs one "
                         "segmentation output")
    out = descr.outputs[0]
    ids = [str(a.id) for a in out.axes]
    space = [a for a in out.axes if a.type == "space"]
    in_ids = [str(a.id) for a in space_in]
    if not space:
        raise InputError(f"{path}: the model produces a tensor with axes {', '.join(ids)} and no image axes "
                         "(a classification or a measurement, not a segmentation)")
    if sorted(str(a.id) for a in space) != sorted(in_ids):
        raise InputError(f"{path}: the model produces an image with space axes {', '.join(str(a.id) for a in space)} "
                         f"for an input with {', '.join(in_ids)}; expected the same 2D grid")
    for a in out.axes:
        if a.type in ("time", "index") and _axis_size(a) != ("fixed", 1):
            raise InputError(f"{path}: the model produces a {a.type} axis '{a.id}' besides the image; unsupported")
    halo: dict[str, tuple[int, int]] = {}
    by_id = {str(a.id): a for a in space_in}
    notes: list[str] = []
    for a in space:
        ref = by_id[str(a.id)]
        size = _axis_size(a)
        if size[0] == "ref":
            if size[1] != str(descr.inputs[0].id) or size[2] != str(a.id):
                raise InputError(f"{path}: output axis '{a.id}' is sized like {size[1]}.{size[2]}; expected the "
                                 f"input's '{a.id}' axis")
            ratio = float(ref.scale) / float(a.scale)
            if abs(ratio - 1) > 1e-6 or size[3] != 0:
                raise InputError(f"{path}: the output's '{a.id}' axis is {ratio:g} x the input's size"
                                 f"{f' + {size[3]}' if size[3] else ''} (different sampling); labels would not "
                                 "align with the image")
        elif size[0] == "fixed":
            in_size = _axis_size(ref)
            if in_size != size:
                raise InputError(f"{path}: the output's '{a.id}' axis has a fixed size {size[1]} that differs from "
                                 f"the input's ({in_size[1:]})")
        else:
            notes.append(f"output axis '{a.id}' has a data-dependent size")
        h = int(getattr(a, "halo", 0) or 0)
        if h:
            h_in = round(h * float(a.scale) / float(ref.scale))
            halo[str(a.id)] = (h_in, h_in)
    return out, halo, notes


def _weights(path: Path, descr) -> tuple[tuple, tuple, str, dict, list[str]]:
    weights = descr.weights
    present = tuple(f for f in WEIGHT_PRIORITY + ("tensorflow_js",) if getattr(weights, f, None) is not None)
    frameworks, runnable, notes, remote, missing = {}, [], [], [], {}
    for f in present:
        need = FRAMEWORKS.get(f, ())
        absent = [m for m in need if not _installed(m)]
        w = getattr(weights, f)
        src = str(w.source)
        if not need:
            frameworks[f] = "no bioimageio.core runner"
            continue
        frameworks[f] = " + ".join(FRAMEWORK_NAMES[m] for m in need) + (
            " (installed)" if not absent else f" ({', '.join(FRAMEWORK_NAMES[m] for m in absent)} not installed)")
        if absent:
            missing[f] = absent
        elif src.startswith(("http://", "https://")):
            remote.append(f"{f} ({src})")
        else:
            runnable.append(f)
        if f == "keras_v3" and not absent:
            backend = str(w.backend[0])
            if backend != "tensorflow":
                notes.append(f"keras_v3 weights saved with the {backend} backend run here with Keras on TensorFlow")
    if not runnable:
        if missing:
            needs = "; ".join(f"{f} needs {', '.join(FRAMEWORK_NAMES[m] for m in ms)}" for f, ms in missing.items())
            raise InputError(f"{path}: no installed framework runs this package's weights: {needs}, which "
                             "is not installed here (this toolkit runs keras_v3, keras_hdf5 and "
                             "tensorflow_saved_model_bundle weights with TensorFlow/Keras)")
        if remote:
            raise InputError(f"{path}: the weights are only a URL ({'; '.join(remote)}); nothing is downloaded "
                             "at run time: download the complete package (.zip) and pass that")
        raise InputError(f"{path}: bioimageio.core cannot run the package's weight formats ({', '.join(present)})")
    return present, tuple(runnable), runnable[0], frameworks, notes


def _parse_text_size(text) -> float | None:
    m = re.match(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-zµμ]+)", str(text or ""))
    if not m or m.group(2) not in _TEXT_UNITS:
        return None
    value = float(m.group(1)) * _TEXT_UNITS[m.group(2)]
    return value if value > 0 and math.isfinite(value) else None


def _pixel_size(descr, space_in: list) -> tuple[float | None, str | None, dict, str | None, list[str]]:
    scales = {str(a.id): float(a.scale) for a in space_in}
    units = {a.unit for a in space_in}
    unit = next(iter(units)) if len(units) == 1 else None
    notes: list[str] = []
    if unit is not None and str(unit) in UNIT_UM:
        sizes = [s * UNIT_UM[str(unit)] for s in scales.values()]
        if abs(sizes[0] - sizes[1]) <= 1e-6 * max(sizes):
            return sizes[0], "axes", scales, str(unit), notes
        per_axis = ", ".join(f"{k} {v * UNIT_UM[str(unit)]:.4g} µm" for k, v in scales.items())
        notes.append(f"anisotropic pixels ({per_axis}); no single pixel size")
        return None, None, scales, str(unit), notes
    if len(units) > 1:
        notes.append(f"space axes with different units ({units}); no pixel size taken")
    cfg = descr.config.model_dump() if descr.config is not None else {}
    ours = (cfg.get("rescale4dl") or {}).get("pixel_size_um")
    if isinstance(ours, (int, float)) and ours > 0 and math.isfinite(ours):
        return float(ours), "config.rescale4dl", scales, None, notes
    try:
        px = cfg["deepimagej"]["test_information"]["inputs"][0]["pixel_size"]
        value = _parse_text_size(px.get("x") or px.get("y"))
    except (KeyError, IndexError, TypeError, AttributeError):
        value = None
    if value is not None:
        return value, "config.deepimagej", scales, None, notes
    return None, None, scales, None, notes


def _tiling(space_in: list, halo: dict) -> dict[str, dict]:
    out = {}
    for a in space_in:
        size = _axis_size(a)
        h = halo.get(str(a.id), (0, 0))
        rule = {"size": size[1]} if size[0] == "fixed" else {"min": size[1], "step": size[2]}
        out[str(a.id)] = {**rule, "halo": max(h)}
    return out


def _inspect(path: str | Path):
    """(PackageInfo, ModelDescr)."""
    os.environ["KERAS_BACKEND"] = "tensorflow"  # bioimageio.core would otherwise pick torch for Keras weights
    src = _read_source(path)
    descr = _load_description(src)
    p = src.path
    declared = str(src.rdf.get("format_version", "?"))
    if len(descr.inputs) != 1:
        ids = ", ".join(str(t.id) for t in descr.inputs)
        raise InputError(f"{p}: the model needs {len(descr.inputs)} inputs ({ids}); one 2D image can feed only a "
                         "single-input model")
    ipt = descr.inputs[0]
    space_in = _check_input(p, ipt)
    notes: list[str] = []
    out, halo, out_notes = _check_output(p, descr, space_in)
    tags = {str(t).lower() for t in (descr.tags or [])}
    kind, form, n_classes, class_names, kind_notes = _classify_output(p, out, tags)
    for proc, module in POSTPROCESSING_NEEDS.items():
        if any(str(x.id) == proc for x in out.postprocessing) and not _installed(module):
            raise InputError(f"{p}: the package's {proc} needs the '{module}' package, which is not installed")
    present, runnable, chosen, frameworks, w_notes = _weights(p, descr)
    px, px_source, scales, unit, px_notes = _pixel_size(descr, space_in)
    updated = declared if not declared.startswith("0.5") else None
    if updated:
        notes.append(f"updated from spec {declared} to 0.5 by bioimageio.spec")
    info = PackageInfo(
        path=str(p), name=str(descr.name), format_version=declared, updated_from=updated,
        input_id=str(ipt.id), input_axes=tuple(str(a.id) for a in ipt.axes), input_2d_single_channel=True,
        output_id=str(out.id), output_axes=tuple(str(a.id) for a in out.axes), output_kind=kind, output_form=form,
        n_classes=n_classes, class_names=class_names, task=kind,
        preprocessing=tuple(str(x.id) for x in ipt.preprocessing),
        postprocessing=tuple(str(x.id) for x in out.postprocessing),
        weight_formats=present, runnable_formats=runnable, weight_format=chosen, frameworks=frameworks,
        pixel_size_um=px, pixel_size_source=px_source, axis_scale=scales, axis_unit=unit,
        tiling=_tiling(space_in, halo), notes=tuple(notes + out_notes + kind_notes + w_notes + px_notes))
    return info, descr


def inspect_package(path: str | Path) -> PackageInfo:
    """Validate a bioimage.io model package offline and report what a sweep needs (module docstring).

    Raises `InputError` (naming the package) for: a missing path, a file that is not a package or
    a damaged zip, a description that does not validate (or a 0.4 one that cannot be updated),
    a model a 2D single-channel image cannot feed (3D, several channels or inputs), an output that
    is not a class map, class probabilities or a label image, and weights no installed framework
    runs. Imports bioimageio.spec only (no TensorFlow); writes nothing.
    """
    return _inspect(path)[0]


# ----------------------------------------------------------------------------- running

def _import_core():
    """bioimageio.core with Keras on TensorFlow (it switches Keras to torch otherwise)."""
    os.environ["KERAS_BACKEND"] = "tensorflow"
    from rescale4dl_bmz.models import require_tensorflow_backend

    require_tensorflow_backend()  # refuses a Keras already imported with another backend
    import bioimageio.core

    if bioimageio.core.settings.keras_backend != "tensorflow":  # imported earlier under another KERAS_BACKEND
        bioimageio.core.settings.keras_backend = "tensorflow"
    return bioimageio.core


def _quiet_keras_adapter(descr):
    """bioimageio.core's Keras adapter, calling the model directly: no progress bar per tile, and no
    tf.function retraced for every new tile shape (as `model.predict` does)."""
    from bioimageio.core.backends.keras_backend import KerasModelAdapter

    class QuietKerasModelAdapter(KerasModelAdapter):
        def _forward_impl(self, device, model, input_arrays):
            x = input_arrays[0] if len(input_arrays) == 1 else list(input_arrays)
            out = model(x, training=False)
            outs = list(out) if isinstance(out, (list, tuple)) else [out]
            return [np.asarray(o) for o in outs]

    return QuietKerasModelAdapter(descr, devices=None)


@dataclass(frozen=True)
class _AxisPlan:
    n: int        # image length
    before: int   # padding before (the input halo)
    after: int    # padding after (halo + rounding up to whole tiles)
    block: int    # tile length fed to the model (valid for the axis' size rule)
    inner: int    # tile length kept (block minus halos)
    tiles: int


def _valid_at_least(m: int, rule: dict) -> int | None:
    if "size" in rule:
        return rule["size"] if m <= rule["size"] else None
    lo, step = rule["min"], rule["step"]
    if step <= 0:  # a single size
        return lo
    return lo + max(0, -(-(m - lo) // step)) * step


def plan_axis(n: int, rule: dict, tile_size: int = DEFAULT_TILE_SIZE) -> _AxisPlan:
    """How one image axis of length `n` is padded and tiled for an axis with `rule` (min/step or size, halo)."""
    h = int(rule.get("halo", 0))
    if "size" in rule:
        block = int(rule["size"])
    elif n <= tile_size:
        block = _valid_at_least(n + 2 * h, rule)
    else:
        want = -(-n // -(-n // tile_size))  # split n evenly into ceil(n / tile_size) parts
        block = _valid_at_least(want + 2 * h, rule)
    inner = block - 2 * h
    if inner <= 0:
        raise InputError(f"tile of {block} px leaves nothing inside a halo of {h} px")
    tiles = -(-n // inner)
    return _AxisPlan(n, h, tiles * inner + h - n, block, inner, tiles)


def _pad_kwargs(pad) -> dict:
    mode = getattr(pad, "mode", None) or "symmetric"
    if mode == "constant":
        return {"mode": "constant", "constant_values": getattr(pad, "value", 0)}
    return {"mode": mode}


def _check_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise InputError(f"expected a 2D image, got shape {image.shape}")
    if image.dtype == bool:
        image = image.astype(np.uint8)
    if not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image):
        raise InputError(f"image pixel type {image.dtype} is not a real number type")
    if np.issubdtype(image.dtype, np.floating) and not np.all(np.isfinite(image)):
        raise InputError("image holds NaN or infinite values")
    return image


class PackagedModel:
    """A bioimage.io model package loaded once, with one bioimageio.core prediction pipeline."""

    def __init__(self, info: PackageInfo, descr, pipeline, workdir=None, tile_size: int = DEFAULT_TILE_SIZE):
        self.info = info
        self.descr = descr
        self.tile_size = int(tile_size)
        self._pp = pipeline
        self._workdir = workdir  # keeps unpacked TensorFlow weights alive
        ipt = descr.inputs[0]
        self._in_dims = tuple(str(a.id) for a in ipt.axes)
        space = tuple(str(a.id) for a in ipt.axes if a.type == "space")
        self._space = ("y", "x") if set(space) == {"y", "x"} else space  # image rows, columns
        self._in_float = str(_data_descr(ipt).type).startswith("float")
        self._pad = _pad_kwargs(getattr(ipt, "pad", None))
        self._count = 0

    @property
    def task(self) -> str:
        return self.info.task

    @property
    def weight_format(self) -> str:
        return self.info.weight_format

    def _sample(self, array: np.ndarray, dims: tuple[str, ...], stat: dict, sample_id):
        from bioimageio.core import Tensor
        from bioimageio.core.common import MemberId
        from bioimageio.core.sample import Sample

        return Sample(members={MemberId(self.info.input_id): Tensor.from_numpy(array, dims=dims)},
                      stat=stat, id=sample_id)

    def _preprocess(self, image: np.ndarray, sample_id) -> tuple[np.ndarray, tuple[str, ...], dict]:
        """The package's preprocessing on the whole image: (array, its dims, sample statistics)."""
        sizes = dict(zip(self._space, image.shape))
        arr = image.astype(np.float32, copy=False) if self._in_float else image
        arr = np.transpose(arr, [self._space.index(d) for d in self._in_dims if d in sizes])  # declared order
        sample = self._sample(arr.reshape([sizes.get(d, 1) for d in self._in_dims]), self._in_dims, {}, sample_id)
        self._pp.apply_preprocessing(sample)
        t = next(iter(sample.members.values()))
        return np.asarray(t.data.to_numpy()), tuple(str(d) for d in t.dims), sample.stat

    def _forward(self, tile: np.ndarray, dims: tuple[str, ...], stat: dict, sample_id):
        """The model alone on one tile: (raw output array, its dims)."""
        out = self._pp.predict_sample_without_blocking(
            self._sample(np.ascontiguousarray(tile), dims, stat, sample_id), skip_preprocessing=True,
            skip_postprocessing=True, skip_input_padding=True, skip_output_cropping=True)
        t = next(v for k, v in out.members.items() if str(k) == self.info.output_id)
        return np.asarray(t.data.to_numpy()), tuple(str(d) for d in t.dims)

    def _ratio(self, plans: dict, shape: tuple[int, ...], rdims: tuple[str, ...]) -> dict[str, float]:
        """Output pixels per input pixel on each space axis (1, or 1/grid for StarDist's raw maps)."""
        ratio = {}
        for a in self._space:
            r = shape[rdims.index(a)] / plans[a].block
            for v in (plans[a].before * r, plans[a].inner * r):
                if abs(v - round(v)) > 1e-6:
                    raise InputError(f"{self.info.path}: the raw output's '{a}' axis is {r:g} x the input tile; "
                                     "tiles cannot be stitched on its grid")
            ratio[a] = r
        return ratio

    def _run_tiles(self, x: np.ndarray, dims: tuple[str, ...], plans: dict, stat: dict, sample_id):
        """Raw output of the padded image, tile by tile, inner parts stitched: (array, dims, ratio)."""
        raw = rdims = ratio = None
        ya, xa = self._space
        for iy in range(plans[ya].tiles):
            for ix in range(plans[xa].tiles):
                where = {ya: iy, xa: ix}
                sl = tuple(slice(where[d] * plans[d].inner, where[d] * plans[d].inner + plans[d].block)
                           if d in where else slice(None) for d in dims)
                out, odims = self._forward(x[sl], dims, stat, sample_id)
                if raw is None:
                    rdims, ratio = odims, self._ratio(plans, out.shape, odims)
                    shape = [round(plans[d].tiles * plans[d].inner * ratio[d]) if d in ratio else n
                             for d, n in zip(rdims, out.shape)]
                    raw = np.zeros(shape, out.dtype)
                src, dst = [], []
                for d in rdims:
                    if d in where:
                        n, b = round(plans[d].inner * ratio[d]), round(plans[d].before * ratio[d])
                        src.append(slice(b, b + n))
                        dst.append(slice(where[d] * n, (where[d] + 1) * n))
                    else:
                        src.append(slice(None))
                        dst.append(slice(None))
                raw[tuple(dst)] = out[tuple(src)]
        return raw, rdims, ratio

    def predict_output(self, image: np.ndarray, tile_size: int | None = None) -> np.ndarray:
        """The package's output for a raw 2D image, after its post-processing: (H, W, C).

        Images wider than `tile_size` (default: the model's) inner pixels are tiled.
        """
        from bioimageio.core import Tensor
        from bioimageio.core.common import MemberId
        from bioimageio.core.sample import Sample

        if self._pp is None:
            raise RuntimeError(f"{self!r} is closed")
        image = _check_image(image)
        self._count += 1
        sid = f"image{self._count}"
        sizes = dict(zip(self._space, image.shape))
        x, dims, stat = self._preprocess(image, sid)  # per-sample statistics from the image itself
        tile = int(tile_size or self.tile_size)
        plans = {a: plan_axis(sizes[a], self.info.tiling[a], tile) for a in self._space}
        x = np.pad(x, [(plans[d].before, plans[d].after) if d in plans else (0, 0) for d in dims], **self._pad)
        raw, rdims, ratio = self._run_tiles(x, dims, plans, stat, sid)
        crop = tuple(slice(0, math.ceil(sizes[d] * ratio[d])) if d in ratio else slice(None) for d in rdims)
        out_id = MemberId(self.info.output_id)
        result = Sample(members={out_id: Tensor.from_numpy(np.ascontiguousarray(raw[crop]), dims=rdims)},
                        stat=stat, id=sid)
        self._pp.apply_postprocessing(result)  # once, on the whole image (StarDist's NMS, ...)
        t = result.members[out_id]
        return self._to_hwc(np.asarray(t.data.to_numpy()), tuple(str(d) for d in t.dims), sizes)

    def _to_hwc(self, arr: np.ndarray, dims: tuple[str, ...], sizes: dict) -> np.ndarray:
        ya, xa = self._space
        index = []
        for d, n in zip(dims, arr.shape):
            if d in (ya, xa, "channel"):
                index.append(slice(None))
            elif n == 1 or d == "batch":
                index.append(0)
            else:
                raise InputError(f"{self.info.path}: the output has an extra axis '{d}' of size {n}")
        arr = arr[tuple(index)]
        kept = [d for d in dims if d in (ya, xa, "channel")]
        order = [kept.index(ya), kept.index(xa)] + ([kept.index("channel")] if "channel" in kept else [])
        arr = np.transpose(arr, order)
        if arr.ndim == 2:
            arr = arr[..., None]
        h, w = sizes[ya], sizes[xa]
        if arr.shape[0] < h or arr.shape[1] < w:
            raise InputError(f"{self.info.path}: the output ({arr.shape[0]}x{arr.shape[1]}) is smaller than the "
                             f"image ({h}x{w})")
        return arr[:h, :w]

    def predict(self, image: np.ndarray, tile_size: int | None = None) -> np.ndarray:
        """Labels for a raw 2D image: uint8 class indices (semantic) or uint8/16/32 instance labels."""
        from rescale4dl_bmz.data.label_arrays import compact_labels

        out = self.predict_output(image, tile_size)
        if self.info.output_form == "probabilities":
            return np.argmax(out, axis=-1).astype(np.uint8)
        values = out[..., 0]
        if not np.issubdtype(values.dtype, np.integer) and values.dtype != bool:
            rounded = np.rint(values)
            if not np.array_equal(rounded, values):
                raise InputError(f"{self.info.path}: the {self.info.output_form} output is not integer-valued")
            values = rounded
        lo = float(values.min()) if values.size else 0.0
        if lo < 0:
            raise InputError(f"{self.info.path}: the output holds negative {self.info.output_form} values ({lo:g})")
        if self.info.output_form == "class_map":
            if values.size and float(values.max()) > 255:
                raise InputError(f"{self.info.path}: the class map holds values above 255; not a class map")
            return values.astype(np.uint8)
        return compact_labels(values.astype(np.int64) if values.dtype.kind == "f" else values)

    def close(self) -> None:
        """Free the model (the pipeline is unusable afterwards)."""
        if self._pp is not None:
            try:
                self._pp.unload()
            finally:
                self._pp = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> "PackagedModel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PackagedModel({self.info.path!r}, task={self.task!r}, weights={self.weight_format!r})"


def load_package(path: str | Path, *, weight_format: str | None = None,
                 tile_size: int = DEFAULT_TILE_SIZE) -> PackagedModel:
    """Inspect, then load a package's weights once into a bioimageio.core prediction pipeline.

    `weight_format` overrides the choice (one of `PackageInfo.runnable_formats`); `tile_size`
    is the largest inner tile side (px) predicted at once: larger images are tiled.
    """
    os.environ["KERAS_BACKEND"] = "tensorflow"  # before bioimageio.core (or Keras) is imported
    if tile_size < 16:
        raise InputError(f"tile size {tile_size} is too small (at least 16 px)")
    info, descr = _inspect(path)
    if weight_format is not None:
        if weight_format not in info.runnable_formats:
            raise InputError(f"{info.path}: weight format {weight_format!r} cannot run here "
                             f"(runnable: {', '.join(info.runnable_formats)})")
        info = dataclasses.replace(info, weight_format=weight_format)
    core = _import_core()
    fmt = info.weight_format
    workdir = None
    old = Path.cwd()
    try:
        if fmt in ("keras_v3", "keras_hdf5"):
            if fmt == "keras_hdf5" and descr.weights.keras_v3 is not None:  # the adapter prefers keras_v3
                descr = descr.model_copy(update={"weights": descr.weights.model_copy(update={"keras_v3": None})})
            adapter = _quiet_keras_adapter(descr)
        else:  # bioimageio.core unpacks SavedModels into the working directory: use a private one
            workdir = tempfile.TemporaryDirectory(prefix="rescale4dl_bmz_weights_")
            os.chdir(workdir.name)
            adapter = core.create_model_adapter(descr, weight_format_priority_order=(fmt,))
        pipeline = core.create_prediction_pipeline(descr, weights_format=fmt, model_adapter=adapter)
    except InputError:
        raise
    except Exception as exc:
        if workdir is not None:
            workdir.cleanup()
        raise InputError(f"{info.path}: its {fmt} weights cannot be loaded ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    finally:
        if Path.cwd() != old:
            os.chdir(old)
    return PackagedModel(info, descr, pipeline, workdir, tile_size)
