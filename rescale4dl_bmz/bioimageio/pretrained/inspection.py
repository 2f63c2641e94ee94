"""What a sweep needs to know about a bioimage.io model package, read offline: `inspect_package`.

``inspect_package(path) -> PackageInfo`` validates a package (see `archive`) and reports the
task its output implies, its input axes, the weight format that will run here, the pixel size
it declares and its tile constraints. Whatever a user can fix (not a package, does not
validate, a 3D or multichannel input, an output that is neither classes nor labels, weights
that no installed framework runs) raises `InputError` naming the package, before any data is
rescaled. It imports bioimageio.spec, not TensorFlow. Weights that are only a URL are refused
(download the package instead).

Output kinds
------------
- semantic, "probabilities": a float output with a channel axis of 2..16 classes (channel
  index = class, channel 0 = background); the runner takes the argmax.
- semantic, "class_map": one integer channel declared as a few classes (nominal values, a
  small range, binarize post-processing, or tagged semantic).
- instance, "labels": StarDist or Cellpose post-processing, or one integer channel without a
  small declared range (a label image).
Anything else (a single float channel, an image without space axes, raw StarDist
probability/distances without the spec's post-processing, several outputs) is refused.
"""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

from rescale4dl_bmz.bioimageio.pretrained.archive import load_description, read_source
from rescale4dl_bmz.bioimageio.pretrained.info import PackageInfo
from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.files.units import unit_to_um

MAX_CLASSES = 16

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


def tensor_data(tensor):
    """The data description of a tensor (the first one when it lists several)."""
    data = tensor.data
    return data[0] if isinstance(data, (list, tuple)) else data


def _classify_output(path: Path, out, tags: set[str]) -> tuple[str, str, int | None, tuple[str, ...] | None, list[str]]:
    """(kind, form, n_classes, class_names, notes) of the output, or InputError saying what it is."""
    post = [str(p.id) for p in out.postprocessing]
    channels = [a for a in out.axes if a.type == "channel"]
    names = tuple(str(n) for c in channels for n in c.channel_names)
    n_ch = len(names) if channels else 1
    data = tensor_data(out)
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
    um = unit_to_um(m.group(2), metric_only=True) if m else None  # an ImageJ calibration, as text
    if um is None:
        return None
    value = float(m.group(1)) * um
    return value if value > 0 and math.isfinite(value) else None


def _pixel_size(descr, space_in: list) -> tuple[float | None, str | None, dict, str | None, list[str]]:
    scales = {str(a.id): float(a.scale) for a in space_in}
    units = {a.unit for a in space_in}
    unit = next(iter(units)) if len(units) == 1 else None
    notes: list[str] = []
    um = unit_to_um(unit) if unit is not None else None
    if um is not None:
        sizes = [s * um for s in scales.values()]
        if abs(sizes[0] - sizes[1]) <= 1e-6 * max(sizes):
            return sizes[0], "axes", scales, str(unit), notes
        per_axis = ", ".join(f"{k} {v * um:.4g} µm" for k, v in scales.items())
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


def inspect_with_descr(path: str | Path):
    """(PackageInfo, the validated spec 0.5 ModelDescr) of a package."""
    src = read_source(path)
    descr = load_description(src)
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
    return inspect_with_descr(path)[0]
