"""`export_package`: a bioimage.io model package of one factor's model from a sweep's run folder.

Steps: validate the run folder, the factor and the metadata (nothing heavy before that), load
the network, make test tensors from a real image at the factor's sampling, write weights
(keras_v3, keras_hdf5, zipped SavedModel, ONNX), ImageJ sample TIFFs, documentation, covers and
the post-processing macro into a temporary folder, build the spec 0.5 description, save the zip
beside the target, run bioimageio.core's `test_model` on it from a temporary working directory,
and only then rename it onto `out_zip`.

GitHub handles offline: bioimageio.spec 0.5.12 checks every `github_user` against
api.github.com whenever `perform_io_checks` is on (its setting, env BIOIMAGEIO_PERFORM_IO_CHECKS,
or `ValidationContext(perform_io_checks=...)`). Turning that off skips the lookup, but
bioimageio.core 0.11's `test_model` (and `bioimageio test`) forces `perform_io_checks=True`, so
offline the lookup fails with a connection error. The spec caches handles it has verified in
`bioimageio.spec._internal.constants.KNOWN_GITHUB_USERS` and skips the lookup for those;
`known_github_users` adds the package's own handles there for the duration of the build and
the test (they are not verified offline; the Zoo's upload checks them online).
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from rescale4dl_bmz.files.atomic import atomic_path
from rescale4dl_bmz.errors import InputError
from rescale4dl_bmz.factors import parse_factor
from rescale4dl_bmz.files.run_folder import SweepRun, check_pixel_size, load_run
from rescale4dl_bmz.process.settings import private_working_directory

log = logging.getLogger(__name__)

VARIANTS = ("bioimageio", "deepimagej")
DEFAULT_LICENSE = "MIT"
IMAGE_SUFFIXES = (".tif", ".tiff")
MACRO = "semantic_to_instances.ijm"


class PackageTestError(RuntimeError):
    """bioimageio.core's test of the freshly built package failed (nothing was written)."""


def package_name(task: str, factor: str, pixel_size_um: float | None, variant: str) -> str:
    """A spec-valid name (letters, digits, spaces, _+-() only; at most 64 characters)."""
    arch = "StarDist" if task == "instance" else "U-Net"
    size = f" ({round(pixel_size_um * 1000)} nm pixels)" if pixel_size_um is not None else ""
    name = f"ReScale4DL {arch} {factor}{size}{' deepImageJ tiling variant' if variant == 'deepimagej' else ''}"
    return re.sub(r"[^A-Za-z0-9_+\- ()]", "", name)[:64]


def dataset_label(dataset: str | None) -> str | None:
    """A short dataset name for public metadata: the folder name, never a local path."""
    if not dataset:
        return None
    parts = [p for p in Path(str(dataset)).parts if p not in ("/", "\\")]
    while len(parts) > 1 and parts[-1].lower() in ("images", "image", "imgs", "raw", "train", "test"):
        parts.pop()
    return parts[-1] if parts else None


def find_test_image(run: SweepRun, factor: str) -> Path:
    """An image of RUN_DIR/<factor>/images (the factor's own sampling), held-out test images first."""
    folder = run.factor_dir(factor) / "images"
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    files.sort(key=lambda p: p.stem not in run.test_images)  # stable: test images first
    if not files:
        raise InputError(f"{folder}: no image at factor {factor} to build the test tensors from; "
                         "pass one with --test-image (an image at that factor's pixel size)")
    return files[0]


def _check_factor(run: SweepRun, factor: str | None, criterion: str, tolerance: float | None):
    from rescale4dl_bmz.decide.select import select_factor

    selection = select_factor(run.summary, run.per_image, criterion, tolerance, pixel_size_um=run.pixel_size_um)
    name = selection.factor if factor is None else parse_factor(factor).name
    if name not in set(selection.table["factor"]):
        done = ", ".join(selection.table["factor"])
        raise InputError(f"factor {name} has not finished in {run.path} (finished: {done})")
    return name, selection


def _check_out(out_zip: str | Path) -> Path:
    out = Path(out_zip)
    if out.suffix.lower() != ".zip":
        raise InputError(f"--out {out}: a bioimage.io package is a .zip file")
    if out.exists() and out.is_dir():
        raise InputError(f"--out {out} is a folder")
    return out


@contextlib.contextmanager
def known_github_users(handles):
    """Let bioimageio.spec accept these GitHub handles without looking them up online (see module doc)."""
    from bioimageio.spec._internal.constants import KNOWN_GITHUB_USERS

    added = {h.lower() for h in handles} - KNOWN_GITHUB_USERS
    KNOWN_GITHUB_USERS.update(added)
    try:
        yield
    finally:
        KNOWN_GITHUB_USERS.difference_update(added)


def package_github_users(zip_path: Path) -> list[str]:
    """The github_user values of a package's authors and maintainers (read from its rdf.yaml)."""
    import zipfile

    import yaml

    with zipfile.ZipFile(zip_path) as zf:
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
    people = [*(rdf.get("authors") or []), *(rdf.get("maintainers") or [])]
    return sorted({p["github_user"] for p in people if isinstance(p, dict) and p.get("github_user")})


def check_package(zip_path: str | Path) -> "object":
    """Run bioimageio.core's `test_model` on a package (all weight formats), offline; return the summary.

    The package's own GitHub handles are accepted without an online lookup (`known_github_users`).
    """
    from rescale4dl_bmz.models import require_tensorflow_backend

    require_tensorflow_backend()  # before bioimageio.core, which would otherwise pick Keras' torch backend
    from bioimageio.core import test_model

    zip_path = Path(zip_path).resolve()
    # bioimageio.core unpacks TensorFlow weights into the working directory: a private, temporary one
    with private_working_directory(), known_github_users(package_github_users(zip_path)):
        return test_model(zip_path)


def failure_text(summary) -> str:
    lines = []
    for d in summary.details:
        if d.status == "failed":
            lines.append(f"- {d.name}: " + "; ".join(e.msg.splitlines()[0] if e.msg else "" for e in d.errors))
    return "\n".join(lines) or str(summary.status)


def export_package(run_dir: str | Path, factor: str | None = None, out_zip: str | Path | None = None, *,
                   variant: str = "bioimageio", run_test: bool = True, criterion: str = "coarsest-equivalent",
                   tolerance: float | None = None, pixel_size_um: float | None = None,
                   test_image: str | Path | np.ndarray | None = None, authors: list | None = None,
                   license_id: str | None = None, metadata=None) -> Path:
    """Write a bioimage.io spec 0.5 package of `factor`'s model (default: the selected factor).

    variant "bioimageio" (the one package a sweep writes, for the Zoo and deepImageJ): space axes
    with scale = pixel size (µm) and unit micrometer when the pixel size is known.
    variant "deepimagej": a tiling fallback marked as a variant of the main package: unit scales;
    the pixel size goes to config.deepimagej.test_information.
    `metadata`: a `PackageMetadata` (or its fields as a dict); `authors` ("NAME[:GITHUB[:ORCID]]"
    or dicts) and `license_id` override its fields. `pixel_size_um` is the ORIGINAL pixel size
    (overrides run.json); `test_image` is an image at the factor's sampling (default: the first
    of RUN_DIR/<factor>/images). With `run_test`, bioimageio.core's test must pass or
    `PackageTestError` is raised and nothing is written.
    """
    from rescale4dl_bmz.bioimageio.export.metadata import PackageMetadata, make_metadata

    if variant not in VARIANTS:
        raise InputError(f"--variant {variant!r} is not one of {', '.join(VARIANTS)}")
    if out_zip is None:
        raise InputError("no output file given (--out PACKAGE.zip)")
    out = _check_out(out_zip)
    fields = metadata.model_dump() if isinstance(metadata, PackageMetadata) else dict(metadata or {})
    if authors:
        fields["authors"] = authors
    if license_id:
        fields["license"] = license_id
    meta = make_metadata(**fields)
    _check_license(meta.license)
    if meta.data_license:
        _check_license(meta.data_license, "data licence")
    run = load_run(run_dir, check_pixel_size(pixel_size_um))
    name, selection = _check_factor(run, factor, criterion, tolerance)
    from rescale4dl_bmz.bioimageio.export.network import check_model_folder

    check_model_folder(run.model_dir(name))
    image = _read_test_image(run, name, test_image)

    from rescale4dl_bmz.bioimageio.export.network import load_network

    network = load_network(run.model_dir(name))
    if network.task != run.task:
        raise InputError(f"{run.model_dir(name)}: a {network.task} model in a {run.task} run")
    scale_f = parse_factor(name).scale
    px = None if run.pixel_size_um is None else run.pixel_size_um * scale_f
    if px is None:
        log.warning("the original pixel size is unknown: the package's axes carry unit scales; pass --pixel-size")
    data = training_data_summary(run, name, meta, px)
    with tempfile.TemporaryDirectory(prefix="rescale4dl_export_") as tmp, known_github_users(meta.github_users):
        tmp = Path(tmp)
        files, covers, rows, shapes = _write_parts(tmp, run, name, network, image, px, variant, selection, meta, data)
        descr = _describe(run, name, network, files, covers, rows, shapes, px, variant, selection, meta, data)
        from bioimageio.spec import save_bioimageio_package

        staged = tmp / "package.zip"
        save_bioimageio_package(descr, output_path=staged)
        if run_test:
            summary = check_package(staged)
            if summary.status != "passed":
                raise PackageTestError(f"bioimageio.core's test of the {variant} package failed:\n{failure_text(summary)}")
        with atomic_path(out) as target:
            shutil.copyfile(staged, target)
    return out


def training_data_summary(run: SweepRun, factor: str, meta, px: float | None) -> dict:
    """What the model was trained on: name, images, objects, pixel sizes, licence (from the run folder)."""
    from rescale4dl_bmz.files.images import read_mask

    name = meta.data_name or dataset_label(run.dataset) or "training data"
    record = {"name": name, "n_images": None, "n_held_out": None, "n_objects": None,
              "image_shape": list(run.image_shape) if run.image_shape else None,
              "original_pixel_size_um": run.pixel_size_um, "pixel_size_um": px, "factor": factor,
              "license": meta.data_license, "citation": meta.data_citation, "doi": meta.data_doi}
    lines = [f"{name}: 2D images with instance masks, prepared by a ReScale4DL sweep "
             f"({'StarDist instance' if run.task == 'instance' else 'U-Net edge/inner semantic'} segmentation)."]
    folder = next((run.factor_dir(f) / "masks" for f in ("og", factor) if (run.factor_dir(f) / "masks").is_dir()), None)
    masks = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder else []
    if masks:
        n_objects = sum(int(np.count_nonzero(np.unique(read_mask(p)))) for p in masks)
        held = [p for p in masks if p.stem in run.test_images]
        record.update(n_images=len(masks), n_held_out=len(held), n_objects=n_objects)
        lines.append(f"{len(masks)} images ({len(masks) - len(held)} for training and validation, {len(held)} held "
                     f"out for evaluation) with {n_objects} annotated objects")
    if run.image_shape:
        lines.append(f"image size {run.image_shape[0]} x {run.image_shape[1]} px at the original sampling")
    if run.pixel_size_um is not None:
        lines.append(f"original pixel size {run.pixel_size_um:.4g} µm; the model was trained at {px:.4g} µm "
                     f"(factor {factor})")
    else:
        lines.append(f"original pixel size not given; the model was trained at {parse_factor(factor).scale:g}x it "
                     f"(factor {factor})")
    if meta.data_license:
        lines.append(f"licence: {meta.data_license}")
    if meta.data_citation or meta.data_doi:
        lines.append("reference: " + " ".join(x for x in (meta.data_citation, f"doi:{meta.data_doi}"
                                                           if meta.data_doi else None) if x))
    return {**record, "lines": lines}


def _check_license(license_id: str, what: str = "--license") -> None:
    from pydantic import ValidationError
    from bioimageio.spec.model import v0_5 as v

    try:
        v.LicenseId(license_id)
    except (ValidationError, ValueError):
        raise InputError(f"{what} {license_id!r} is not an SPDX license identifier (e.g. MIT, CC-BY-4.0)") from None


def _read_test_image(run: SweepRun, factor: str, test_image) -> np.ndarray:
    from rescale4dl_bmz.files.images import read_image

    if isinstance(test_image, np.ndarray):
        if test_image.ndim != 2:
            raise InputError(f"test image must be 2D, got shape {test_image.shape}")
        return test_image
    path = Path(test_image) if test_image is not None else find_test_image(run, factor)
    if not path.is_file():
        raise InputError(f"--test-image {path} does not exist")
    return read_image(path)


def _write_parts(tmp: Path, run: SweepRun, factor: str, network, image, px, variant, selection, meta, data):
    """Every file of the package in `tmp`; returns (files by role, covers, sweep rows, test tensor shapes)."""
    import tensorflow as tf

    from rescale4dl_bmz.imagej.install import macro_path
    from rescale4dl_bmz.bioimageio.export.covers import write_covers
    from rescale4dl_bmz.bioimageio.export.docs import documentation, sweep_table
    from rescale4dl_bmz.bioimageio.export.samples import write_samples
    from rescale4dl_bmz.bioimageio.export.tensors import make_test_tensors
    from rescale4dl_bmz.bioimageio.export.weights import write_keras_hdf5, write_keras_v3, write_onnx, write_saved_model_zip

    test_in, test_out = make_test_tensors(network, image)
    files = {"test_input": tmp / "test_input.npy", "test_output": tmp / "test_output.npy"}
    np.save(files["test_input"], test_in)
    np.save(files["test_output"], test_out)
    files["sample_input"], files["sample_output"] = write_samples(tmp, test_in, test_out, px)
    files["keras_v3"] = write_keras_v3(network.keras_model, tmp / "model.keras")
    files["keras_hdf5"] = write_keras_hdf5(network.keras_model, tmp / "model.h5")
    files["tensorflow_saved_model_bundle"] = write_saved_model_zip(network.keras_model, tmp / "tf_saved_model.zip",
                                                                   "input", "output")
    files["onnx"] = write_onnx(network.keras_model, tmp / "model.onnx", "input", "output")
    if run.task == "semantic":
        files["macro"] = tmp / MACRO
        shutil.copyfile(macro_path(MACRO), files["macro"])
    size = f"{px:.4g} µm pixels" if px is not None else f"{parse_factor(factor).scale:g}x the original pixel size"
    covers = write_covers(tmp, run.figure(), test_in, test_out, network.task,
                          f"{factor} · {size} · test image and its predicted segmentation")
    files["summary"] = tmp / "sweep_summary.csv"
    run.summary.drop(columns=["error"], errors="ignore").to_csv(files["summary"], index=False)  # no local paths
    rows = sweep_table(run.summary, run.pixel_size_um)
    text = documentation(
        name=package_name(run.task, factor, px, variant), task=run.task, factor=factor,
        scale=parse_factor(factor).scale, pixel_size_um=px, original_pixel_size_um=run.pixel_size_um,
        variant=variant, reason=selection.reason, criterion=selection.criterion,
        recommended_factor=selection.factor, rows=rows, network=network, dataset=dataset_label(run.dataset),
        test_shape=test_in.shape[1:3], training_data=data, macro=MACRO if "macro" in files else None,
        meta=meta, tf_version=tf.__version__)
    files["documentation"] = tmp / "README.md"
    files["documentation"].write_text(text, encoding="utf-8")
    return files, covers, rows, (test_in.shape, test_out.shape)


def _describe(run: SweepRun, factor: str, network, files: dict, covers, rows, shapes, px, variant, selection, meta,
              data):
    from rescale4dl_bmz.bioimageio.export.describe import deepimagej_config, exact_scale, halo_px, model_description

    scale_f = parse_factor(factor).scale
    on_axes = variant == "bioimageio" and px is not None
    main_name = package_name(run.task, factor, px, "bioimageio")
    rescale4dl = {
        "task": run.task, "factor": factor, "scale": scale_f, "pixel_size_um": px,
        "original_pixel_size_um": run.pixel_size_um, "variant": variant,
        "variant_of": main_name if variant != "bioimageio" else None,
        "axes_carry_pixel_size": on_axes, "recommended_factor": selection.factor,
        "criterion": selection.criterion, "reason": selection.reason, "grid": selection.grid,
        "dataset": dataset_label(run.dataset), "image_shape": list(run.image_shape) if run.image_shape else None,
        "normalization": {"low_percentile": network.low_percentile, "high_percentile": network.high_percentile},
        "receptive_field_px": network.receptive_field_px, "sweep": rows,
        "postprocessing_macro": MACRO if "macro" in files else None,
        "training_data": {k: v for k, v in data.items() if k != "lines"} if data else None,
    }
    if network.stardist:
        rescale4dl["stardist"] = {k: list(v) if isinstance(v, tuple) else v for k, v in network.stardist.items()}
    dij = deepimagej_config(px, scale_f, *shapes, macro=MACRO if "macro" in files else None)
    config = {"deepimagej": dij, "rescale4dl": _yaml_safe(rescale4dl)}
    what = "instance" if run.task == "instance" else "semantic"
    size = f"{px:.4g} µm" if px is not None else (f"{scale_f:g}x the original pixel size" if scale_f != 1
                                                   else "the original pixel size")
    which = "its ReScale4DL-recommended" if selection.factor == factor else "the"
    label = data.get("name") if data else dataset_label(run.dataset)
    description = (f"2D {network.architecture} {what} segmentation trained at {which} sampling, {size} "
                   f"(factor {factor})" + (f", on {label}" if label else "") + ".")
    if run.task == "semantic":
        description += " An ImageJ macro turns its edge/inner output into instance labels in Fiji."
    if variant != "bioimageio":
        description += f" deepImageJ tiling variant of '{main_name}' (unit axis scales)."
    tags = ["rescale4dl", "2d", "segmentation", f"{what}-segmentation", "deepimagej", "tensorflow", "keras", "onnx",
            "microscopy",
            "stardist" if run.task == "instance" else "unet"]
    return model_description(
        name=package_name(run.task, factor, px, variant), description=description[:1000], meta=meta,
        task=run.task, network=network, files=files,
        scale=exact_scale(px) if on_axes else 1.0, unit="micrometer" if on_axes else None,
        halo=halo_px(network.receptive_field_px, network.divisor), config=config, tags=tags, covers=covers,
        data=data)


def _yaml_safe(value):
    """Plain YAML types only (tuples -> lists, NaN -> None, numpy scalars -> Python)."""
    if isinstance(value, dict):
        return {str(k): _yaml_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_yaml_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value
