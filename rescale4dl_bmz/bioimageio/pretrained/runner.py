"""Running a bioimage.io model package on raw 2D images: `load_package` -> `PackagedModel`.

``load_package(path) -> PackagedModel`` loads the weights once and keeps one bioimageio.core
prediction pipeline for every image. ``PackagedModel.predict(image)`` keeps the contract of
``models.load_model(folder).predict``: a raw 2D image in; semantic -> uint8 class indices
(0/1/2 for our own packages), instance -> uint8/16/32 instance labels; same shape.

Prediction
----------
bioimageio.core's own blocking cannot stitch outputs sampled on a coarser grid than the input
(StarDist's probability/distance maps at ``grid``), so tiling is done here, around the
package's pipeline:
1. the whole image is one sample; the package's preprocessing runs on it, so per-sample
   statistics (e.g. scale_range percentiles) come from the image, not from padding;
2. the preprocessed image is padded with the input's pad mode (symmetric by default) by the
   input halo on every side and at the end up to the axis size rule (min + k*step), and cut
   into tiles of at most ``tile_size`` inner pixels (`plan_axis`; tile starts from
   `models.prediction.tile_starts`); each tile runs through the model alone;
3. the tiles' inner parts are stitched at the output's own sampling, cropped to the image, and
   the package's post-processing runs once on the whole (StarDist's NMS sees every object once);
4. the output is cropped to the image and turned into labels.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rescale4dl_bmz.bioimageio.pretrained.info import PackageInfo
from rescale4dl_bmz.bioimageio.pretrained.inspection import inspect_with_descr, tensor_data
from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.models.prediction import tile_starts
from rescale4dl_bmz.process.settings import private_working_directory, use_tensorflow_keras

DEFAULT_TILE_SIZE = 1024
KERAS_FORMATS = ("keras_v3", "keras_hdf5")  # run in-process by our quiet adapter, nothing unpacked


def _import_core():
    """bioimageio.core with Keras on TensorFlow (it switches Keras to torch otherwise)."""
    use_tensorflow_keras()  # before bioimageio.core (or Keras) is imported
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
class AxisPlan:
    """How one image axis is padded and cut into tiles."""

    n: int        # image length
    before: int   # padding before (the input halo)
    after: int    # padding after (halo + rounding up to whole tiles)
    block: int    # tile length fed to the model (valid for the axis' size rule)
    inner: int    # tile length kept (block minus halos)
    starts: tuple[int, ...]  # tile starts in the padded axis, `inner` apart

    @property
    def tiles(self) -> int:
        return len(self.starts)


def _valid_at_least(m: int, rule: dict) -> int | None:
    if "size" in rule:
        return rule["size"] if m <= rule["size"] else None
    lo, step = rule["min"], rule["step"]
    if step <= 0:  # a single size
        return lo
    return lo + max(0, -(-(m - lo) // step)) * step


def plan_axis(n: int, rule: dict, tile_size: int = DEFAULT_TILE_SIZE) -> AxisPlan:
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
    after = -(-n // inner) * inner + h - n  # whole tiles' inner parts cover the image
    return AxisPlan(n, h, after, block, inner, tuple(tile_starts(h + n + after, block, inner)))


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
        self._in_float = str(tensor_data(ipt).type).startswith("float")
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
        for iy, y0 in enumerate(plans[ya].starts):
            for ix, x0 in enumerate(plans[xa].starts):
                where, start = {ya: iy, xa: ix}, {ya: y0, xa: x0}
                sl = tuple(slice(start[d], start[d] + plans[d].block) if d in start else slice(None) for d in dims)
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
        from rescale4dl_bmz.files.label_arrays import compact_labels

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
    if tile_size < 16:
        raise InputError(f"tile size {tile_size} is too small (at least 16 px)")
    info, descr = inspect_with_descr(path)
    if weight_format is not None:
        if weight_format not in info.runnable_formats:
            raise InputError(f"{info.path}: weight format {weight_format!r} cannot run here "
                             f"(runnable: {', '.join(info.runnable_formats)})")
        info = dataclasses.replace(info, weight_format=weight_format)
    core = _import_core()
    fmt = info.weight_format
    # bioimageio.core unpacks SavedModels into the working directory: a private one, kept with the model
    workdir = None if fmt in KERAS_FORMATS else tempfile.TemporaryDirectory(prefix="rescale4dl_bmz_weights_")
    try:
        with private_working_directory(workdir.name) if workdir is not None else contextlib.nullcontext():
            if workdir is None:
                if fmt == "keras_hdf5" and descr.weights.keras_v3 is not None:  # the adapter prefers keras_v3
                    descr = descr.model_copy(update={"weights": descr.weights.model_copy(update={"keras_v3": None})})
                adapter = _quiet_keras_adapter(descr)
            else:
                adapter = core.create_model_adapter(descr, weight_format_priority_order=(fmt,))
            pipeline = core.create_prediction_pipeline(descr, weights_format=fmt, model_adapter=adapter)
    except InputError:
        raise
    except Exception as exc:
        if workdir is not None:
            workdir.cleanup()
        raise InputError(f"{info.path}: its {fmt} weights cannot be loaded ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    return PackagedModel(info, descr, pipeline, workdir, tile_size)
