"""Sweeping a published model: bioimage.io packages built with our own exporter from tiny real
models (S. aureus at ds2), inspected offline, run through bioimageio.core on images of sizes the
packages never saw, and bad packages refused with clear messages before anything is written."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from rescale4dl_bmz.errors import InputError

FACTOR = "ds2"
SHAPE = (200, 312)  # no package's test tensor has this shape


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def saureus(shared_data):
    from rescale4dl_bmz.files.images import read_image, read_mask, read_pixel_size
    from rescale4dl_bmz.data.rescale import rescale_pair

    folder = shared_data / "saureus_crop"
    image, mask = read_image(folder / "images" / "1.tif"), read_mask(folder / "masks" / "1.tif")
    pixel = read_pixel_size(folder / "images" / "1.tif")
    im2, m2 = rescale_pair(image, mask, FACTOR)
    return {"og": image, "ds2": im2, "ds2_mask": m2, "pixel": pixel}


def _run_folder(root: Path, task: str, pixel: float) -> Path:
    """The tables a finished sweep leaves (og and ds2 on both grids); models are added by training."""
    root.mkdir(parents=True)
    (root / "run.json").write_text(json.dumps({"task": task, "pixel_size_um": pixel, "factors": ["og", FACTOR],
                                               "image_shape": [512, 512], "dataset": "saureus_crop"}))
    rows, per = [], []
    for name, s in (("og", 1), (FACTOR, 2)):
        for grid in ("sampled", "native"):
            ious = np.array([0.70, 0.74, 0.72]) + 0.02 * s
            per += [{"factor": name, "scale": s, "grid": grid, "image": f"im{i}", "iou": v} for i, v in enumerate(ious)]
            rows.append({"factor": name, "scale": s, "pixel_size_um": pixel * s, "grid": grid, "n_images": 3,
                         "iou_mean": ious.mean(), "iou_ci_low": ious.min(), "iou_ci_high": ious.max(),
                         "throughput": 512 * 512 / (150.0 / s ** 2), "status": "done"})
    pd.DataFrame(rows).to_csv(root / "summary.csv", index=False)
    pd.DataFrame(per).to_csv(root / "per_image.csv", index=False)
    return root


def _package(tmp: Path, task: str, data: dict) -> dict:
    """Train a tiny model on four ds2 tiles and export it as the toolkit does (bioimageio variant)."""
    from rescale4dl_bmz.files.images import write_tiff
    from rescale4dl_bmz.bioimageio.export import export_package
    from rescale4dl_bmz.models import make_config, train_model

    image, mask, pixel = data["ds2"], data["ds2_mask"], data["pixel"]
    run = _run_folder(tmp / "run", task, pixel)
    tiles = [(slice(r, r + 128), slice(c, c + 128)) for r in (0, 128) for c in (0, 128)]
    if task == "semantic":
        cfg = make_config("semantic", factor=FACTOR, pixel_size_um=pixel * 2, steps=4, patch_size=64, batch_size=2,
                          architecture={"kind": "unet", "depth": 2, "base_filters": 4})
    else:  # enough steps for real objects; one NMS threshold keeps the threshold search short
        cfg = make_config("instance", factor=FACTOR, pixel_size_um=pixel * 2, steps=120, patch_size=64,
                          batch_size=2, learning_rate=3e-3, nms_thresholds=(0.3,),
                          architecture={"kind": "stardist", "depth": 2, "base_filters": 8, "n_rays": 16, "grid": 2,
                                        "conv_after_unet": 16})
    train_model([image[t] for t in tiles], [mask[t] for t in tiles], cfg, run / FACTOR / "model")
    write_tiff(run / FACTOR / "images" / "1.tif", image.astype(np.float32), pixel * 2)
    package = export_package(run, FACTOR, tmp / f"{task}.zip", run_test=False)
    return {"zip": package, "model_dir": run / FACTOR / "model", "pixel": pixel * 2}


@pytest.fixture(scope="module")
def semantic(tmp_path_factory, saureus):
    from rescale4dl_bmz.bioimageio.pretrained.runner import load_package

    pkg = _package(tmp_path_factory.mktemp("pretrained_semantic"), "semantic", saureus)
    pkg["model"] = load_package(pkg["zip"])
    yield pkg
    pkg["model"].close()


@pytest.fixture(scope="module")
def instance(tmp_path_factory, saureus):
    from rescale4dl_bmz.bioimageio.pretrained.runner import load_package

    pkg = _package(tmp_path_factory.mktemp("pretrained_instance"), "instance", saureus)
    pkg["model"] = load_package(pkg["zip"])
    yield pkg
    pkg["model"].close()


def edited(src: Path, dst: Path, edit=None, add: dict[str, bytes] | None = None) -> Path:
    """A copy of package `src` whose rdf.yaml went through `edit(rdf)`, with files added or replaced."""
    add = add or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        rdf = yaml.safe_load(zin.read("rdf.yaml"))
        if edit is not None:
            edit(rdf)
        for name in zin.namelist():
            if name != "rdf.yaml" and name not in add:
                zout.writestr(name, zin.read(name))
        for name, data in add.items():
            zout.writestr(name, data)
        zout.writestr("rdf.yaml", yaml.safe_dump(rdf, sort_keys=False, allow_unicode=True))
    return dst


def member(zip_path: Path, name: str) -> bytes:
    with zipfile.ZipFile(zip_path) as zf:
        return zf.read(name)


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def image_of_shape(image: np.ndarray, shape=SHAPE) -> np.ndarray:
    """Real pixels in a shape no package was exported with (mirrored where the image is smaller)."""
    h, w = shape
    padded = np.pad(image, ((0, max(0, h - image.shape[0])), (0, max(0, w - image.shape[1]))), mode="symmetric")
    return padded[:h, :w]


# ----------------------------------------------------------------------------- tiles and units

@pytest.mark.parametrize("n, tile_size", [(312, 64), (200, 1024), (1000, 300)])
def test_tile_plan_covers_the_image_with_whole_inner_parts(n, tile_size):
    from rescale4dl_bmz.bioimageio.pretrained.runner import plan_axis

    rule = {"min": 16, "step": 4, "halo": 10}
    plan = plan_axis(n, rule, tile_size)
    assert (plan.block - rule["min"]) % rule["step"] == 0 and plan.inner == plan.block - 2 * rule["halo"]
    assert plan.inner <= max(tile_size, n) and plan.before == rule["halo"]
    assert plan.starts == tuple(range(0, plan.tiles * plan.inner, plan.inner))  # inner parts side by side
    assert (plan.tiles - 1) * plan.inner < n <= plan.tiles * plan.inner
    assert plan.starts[-1] + plan.block == plan.before + n + plan.after  # the last tile ends the padded axis


def test_units_as_packages_and_imagej_write_them():
    from rescale4dl_bmz.files.units import unit_to_um

    assert unit_to_um("nanometer") == 1e-3 and unit_to_um(" Micron ") == 1.0 and unit_to_um("\\u00b5m") == 1.0
    assert unit_to_um("\u03bcm") == unit_to_um("\u00b5m") == unit_to_um("um") == 1.0
    assert unit_to_um("inch") == 25400.0 and unit_to_um("inch", metric_only=True) is None
    assert unit_to_um("pixel") is None


# ----------------------------------------------------------------------------- inspect

def test_inspect_semantic_package(semantic):
    from rescale4dl_bmz.bioimageio.pretrained.inspection import inspect_package

    info = inspect_package(semantic["zip"])
    assert (info.task, info.output_kind, info.output_form) == ("semantic", "semantic", "probabilities")
    assert info.n_classes == 3 and info.class_names == ("background", "inner", "edge")
    assert info.input_axes == ("batch", "y", "x", "channel") and info.input_2d_single_channel
    assert info.pixel_size_um == pytest.approx(semantic["pixel"], rel=1e-9)
    assert (info.pixel_size_source, info.axis_unit) == ("axes", "micrometer")
    assert set(info.weight_formats) == {"keras_v3", "keras_hdf5", "tensorflow_saved_model_bundle", "onnx"}
    assert info.runnable_formats == info.weight_formats and info.weight_format == "keras_v3"
    assert all("(installed)" in v for v in info.frameworks.values())
    assert "scale_range" in info.preprocessing and info.updated_from is None
    tile = info.tiling["y"]
    assert tile["step"] == 4 and tile["halo"] > 0 and tile["min"] >= 2 * tile["halo"]
    assert json.loads(json.dumps(info.as_dict()))["tiling"]["x"] == info.tiling["x"]


def test_inspect_instance_package(instance):
    from rescale4dl_bmz.bioimageio.pretrained.inspection import inspect_package

    info = inspect_package(instance["zip"])
    assert (info.task, info.output_kind, info.output_form) == ("instance", "instance", "labels")
    assert info.n_classes is None and "stardist_postprocessing" in info.postprocessing
    assert info.pixel_size_um == pytest.approx(instance["pixel"], rel=1e-9)
    assert info.tiling["y"]["step"] % 2 == 0  # a multiple of StarDist's grid
    assert "Keras + TensorFlow (installed)" == info.frameworks["keras_v3"]


def test_pixel_size_from_config_when_axes_have_unit_scales(semantic, tmp_path):
    """The deepImageJ variant's axes carry scale 1 and no unit; the pixel size sits in the config."""
    from rescale4dl_bmz.bioimageio.pretrained.inspection import inspect_package

    def unit_scales(rdf):
        for t in rdf["inputs"] + rdf["outputs"]:
            for a in t["axes"]:
                if a.get("type") == "space":
                    a["scale"] = 1.0
                    a.pop("unit", None)

    info = inspect_package(edited(semantic["zip"], tmp_path / "dij.zip", unit_scales))
    assert info.pixel_size_source == "config.rescale4dl" and info.axis_unit is None
    assert info.pixel_size_um == pytest.approx(semantic["pixel"], rel=1e-9)

    def only_deepimagej(rdf):
        unit_scales(rdf)
        rdf["config"].pop("rescale4dl")

    info = inspect_package(edited(semantic["zip"], tmp_path / "dij2.zip", only_deepimagej))
    assert info.pixel_size_source == "config.deepimagej"
    assert info.pixel_size_um == pytest.approx(semantic["pixel"], rel=1e-5)

    def nanometres(rdf):
        for a in rdf["inputs"][0]["axes"] + rdf["outputs"][0]["axes"]:
            if a.get("type") == "space":
                a["unit"], a["scale"] = "nanometer", 160.0

    info = inspect_package(edited(semantic["zip"], tmp_path / "nm.zip", nanometres))
    assert info.pixel_size_um == pytest.approx(0.16) and info.axis_unit == "nanometer"


# ----------------------------------------------------------------------------- predict

def test_semantic_predict_matches_keras_on_unseen_size(semantic, saureus):
    from rescale4dl_bmz.bioimageio.export.tensors import scale_range
    from rescale4dl_bmz.models import load_model

    model, image = semantic["model"], image_of_shape(saureus["og"])
    labels = model.predict(image)
    assert model.task == "semantic" and labels.shape == SHAPE and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1, 2}
    probs = model.predict_output(image)
    assert probs.shape == (*SHAPE, 3) and probs.dtype == np.float32
    np.testing.assert_array_equal(labels, probs.argmax(-1))
    trained = load_model(semantic["model_dir"])
    x = scale_range(image, 1.0, 99.8)  # the package's preprocessing, on the unpadded image
    ref = np.asarray(trained.keras_model.predict(x[None, ..., None], verbose=0))[0]
    h = model.info.tiling["y"]["halo"]  # inside the halo-wide border only padding differs (symmetric vs zeros)
    np.testing.assert_allclose(probs[h:-h, h:-h], ref[h:-h, h:-h], atol=1e-5)
    assert np.mean(labels == ref.argmax(-1)) > 0.8
    inner = (slice(h, -h), slice(h, -h))
    assert np.mean(labels[inner] == trained.predict(image)[inner]) > 0.999


def test_semantic_tiling_gives_the_same_output(semantic, saureus):
    image = image_of_shape(saureus["og"])
    whole = semantic["model"].predict_output(image)
    tiled = semantic["model"].predict_output(image, tile_size=64)  # 4 x 5 tiles
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def inside(labels: np.ndarray, band: int) -> np.ndarray:
    """`labels` without the objects that reach into a `band`-px border (where only padding differs)."""
    edge = np.concatenate([labels[:band].ravel(), labels[-band:].ravel(), labels[:, :band].ravel(),
                           labels[:, -band:].ravel()])
    out = labels.copy()
    out[np.isin(out, edge)] = 0
    return out


def test_instance_predict_on_unseen_size(instance, saureus):
    from stardist.matching import matching

    from rescale4dl_bmz.models import load_model

    model = instance["model"]
    image = image_of_shape(saureus["ds2"])
    labels = model.predict(image)
    assert model.task == "instance" and labels.shape == SHAPE
    assert labels.dtype in (np.uint8, np.uint16, np.uint32)
    assert len(np.unique(labels)) - 1 >= 20, "the tiny StarDist should find cells"
    # StarDist's own predict_instances (zero-padded borders) on the same model: the same objects inside
    reference = load_model(instance["model_dir"]).predict(image)
    band = model.info.tiling["y"]["halo"] // 2
    assert inside(reference, band).max() >= 20
    assert matching(inside(reference, band), inside(labels, band), thresh=0.5).f1 > 0.98
    assert matching(reference, labels, thresh=0.5).f1 > 0.7
    tiled = model.predict(image, tile_size=64)  # 3 x 4 tiles, NMS once on the stitched maps
    assert matching(labels, tiled, thresh=0.5).f1 > 0.98


def test_instance_package_reproduces_its_test_output(instance):
    from stardist.matching import matching

    x = np.load(io.BytesIO(member(instance["zip"], "test_input.npy")))[0, ..., 0]
    y = np.load(io.BytesIO(member(instance["zip"], "test_output.npy")))[0, ..., 0]
    band = instance["model"].info.tiling["y"]["halo"] // 2
    labels = instance["model"].predict(x)
    assert matching(inside(y, band), inside(labels, band), thresh=0.5).f1 > 0.98


@pytest.mark.parametrize("weights", ["keras_hdf5", "tensorflow_saved_model_bundle"])
def test_other_weight_formats_give_the_same_output_and_write_nothing(semantic, saureus, tmp_path, monkeypatch,
                                                                      weights):
    from rescale4dl_bmz.bioimageio.pretrained.runner import load_package

    monkeypatch.chdir(tmp_path)  # bioimageio.core unpacks SavedModels into the working directory
    image = image_of_shape(saureus["og"], (120, 136))
    with load_package(semantic["zip"], weight_format=weights) as other:
        assert other.weight_format == weights
        np.testing.assert_allclose(other.predict_output(image), semantic["model"].predict_output(image), atol=1e-5)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="cannot run here"):
        load_package(semantic["zip"], weight_format="torchscript")


def test_spec_04_package_is_updated_and_runs(semantic, saureus, tmp_path):
    """A hand-written spec 0.4 description of the same Keras weights (a folder with rdf.yaml)."""
    from rescale4dl_bmz.bioimageio.pretrained.inspection import inspect_package
    from rescale4dl_bmz.bioimageio.pretrained.runner import load_package

    folder = tmp_path / "v04"
    folder.mkdir()
    for name in ("model.h5", "test_input.npy", "test_output.npy", "README.md"):
        (folder / name).write_bytes(member(semantic["zip"], name))
    halo = inspect_package(semantic["zip"]).tiling["y"]["halo"]
    rdf = {
        "format_version": "0.4.10", "type": "model", "name": "tiny U-Net in spec 0-4",
        "description": "spec 0.4 description of a tiny U-Net", "authors": [{"name": "Ada Lovelace"}],
        "cite": [{"text": "U-Net", "doi": "10.1007/978-3-319-24574-4_28"}], "license": "MIT",
        "documentation": "README.md", "tags": ["unet", "segmentation"], "timestamp": "2024-01-01T00:00:00",
        "test_inputs": ["test_input.npy"], "test_outputs": ["test_output.npy"],
        "inputs": [{"name": "input", "axes": "byxc", "data_type": "float32", "data_range": [-1e9, 1e9],
                    "shape": {"min": [1, 60, 60, 1], "step": [0, 4, 4, 0]},
                    "preprocessing": [{"name": "scale_range", "kwargs": {"mode": "per_sample", "axes": "xy",
                                                                         "min_percentile": 1.0,
                                                                         "max_percentile": 99.8}}]}],
        "outputs": [{"name": "output", "axes": "byxc", "data_type": "float32", "data_range": [0.0, 1.0],
                     "halo": [0, halo, halo, 0],
                     "shape": {"reference_tensor": "input", "scale": [1, 1, 1, 0], "offset": [0, 0, 0, 1.5]}}],
        "weights": {"keras_hdf5": {"source": "model.h5", "tensorflow_version": "2.21"}},
    }
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf, sort_keys=False))
    info = inspect_package(folder)
    assert info.updated_from == "0.4.10" and info.format_version == "0.4.10"
    assert (info.task, info.output_form, info.n_classes) == ("semantic", "probabilities", 3)
    assert info.pixel_size_um is None and info.weight_format == "keras_hdf5"
    image = image_of_shape(saureus["og"], (96, 140))
    with load_package(folder / "rdf.yaml") as old:
        np.testing.assert_allclose(old.predict_output(image), semantic["model"].predict_output(image), atol=1e-5)


# ----------------------------------------------------------------------------- bad packages

@pytest.fixture
def quiet_dir(tmp_path, monkeypatch):
    """An empty working directory; bad packages must leave it (and an output folder) untouched."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    yield work
    assert list(work.iterdir()) == []
    assert not (tmp_path / "out").exists()


def refused(path, match: str) -> str:
    from rescale4dl_bmz.bioimageio.pretrained.inspection import inspect_package
    from rescale4dl_bmz.bioimageio.pretrained.runner import load_package

    before = Path(path).read_bytes() if Path(path).is_file() else None
    with pytest.raises(InputError, match=match) as err:
        inspect_package(path)
    assert str(path) in str(err.value)
    with pytest.raises(InputError, match=match):
        load_package(path)
    if before is not None:
        assert Path(path).read_bytes() == before
    return str(err.value)


def test_missing_and_corrupt_files_are_refused(semantic, tmp_path, quiet_dir):
    refused(tmp_path / "nothing.zip", "does not exist")
    (tmp_path / "notes.zip").write_text("not a zip")
    refused(tmp_path / "notes.zip", "not a readable zip")
    data = semantic["zip"].read_bytes()
    (tmp_path / "truncated.zip").write_bytes(data[: len(data) // 2])
    refused(tmp_path / "truncated.zip", "zip")
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as zf:
        zf.writestr("README.md", "no description")
    refused(tmp_path / "empty.zip", "no rdf.yaml")
    (tmp_path / "folder").mkdir()
    refused(tmp_path / "folder", "no rdf.yaml")


def test_descriptions_that_do_not_validate_are_refused(semantic, tmp_path, quiet_dir):
    def bad_hash(rdf):
        rdf["weights"]["keras_v3"]["sha256"] = "0" * 64

    msg = refused(edited(semantic["zip"], tmp_path / "hash.zip", bad_hash), "does not validate")
    assert "weights.keras_v3" in msg and "Sha256 mismatch" in msg
    refused(edited(semantic["zip"], tmp_path / "noinputs.zip", lambda rdf: rdf.pop("inputs")), "does not validate")

    def missing_file(rdf):
        rdf["weights"]["keras_hdf5"]["source"] = "gone.h5"

    assert "missing from the package" in refused(edited(semantic["zip"], tmp_path / "gone.zip", missing_file),
                                                 "does not validate")
    refused(edited(semantic["zip"], tmp_path / "dataset.zip", lambda rdf: rdf.update(type="dataset")), "not a model")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "rdf.yaml").write_text("type: model\nname: [unclosed\n")
    refused(tmp_path / "broken", "not valid YAML")


def test_three_channel_and_3d_inputs_are_refused(semantic, tmp_path, quiet_dir):
    def rgb(rdf):
        rdf["inputs"][0]["axes"][-1]["channel_names"] = ["red", "green", "blue"]
        rdf["inputs"][0]["test_tensor"].pop("sha256")

    rgb_zip = edited(semantic["zip"], tmp_path / "rgb.zip", rgb,
                     add={"test_input.npy": npy_bytes(np.zeros((1, 256, 256, 3), np.float32))})
    msg = refused(rgb_zip, "needs 3 input channels")
    assert "red, green, blue" in msg and "single-channel" in msg

    def volume(rdf):
        axes = rdf["inputs"][0]["axes"]
        axes.insert(1, {"type": "space", "id": "z", "size": {"min": 8, "step": 4}, "unit": "micrometer",
                        "scale": 0.5})
        rdf["inputs"][0]["test_tensor"].pop("sha256")

    msg = refused(edited(semantic["zip"], tmp_path / "3d.zip", volume), "3D")
    assert "z" in msg and "2D" in msg


def test_torch_only_and_remote_weights_are_refused(semantic, tmp_path, quiet_dir):
    def torchscript(rdf):
        rdf["weights"] = {"torchscript": {"source": "model.pt", "pytorch_version": "2.5.0"}}

    torch_zip = edited(semantic["zip"], tmp_path / "torch.zip", torchscript, add={"model.pt": b"not really torch"})
    msg = refused(torch_zip, "PyTorch")
    assert "torchscript" in msg and "not installed" in msg

    def remote(rdf):  # offline: refused at once, never fetched
        rdf["weights"] = {"keras_hdf5": {"source": "https://example.org/weights/model.h5",
                                         "tensorflow_version": "2.21.0"}}

    refused(edited(semantic["zip"], tmp_path / "remote.zip", remote), "only a URL")


def test_outputs_that_are_not_segmentations_are_refused(semantic, instance, tmp_path, quiet_dir):
    def one_float_channel(rdf):
        rdf["outputs"][0]["axes"][-1]["channel_names"] = ["foreground"]
        rdf["outputs"][0]["test_tensor"].pop("sha256")

    msg = refused(edited(semantic["zip"], tmp_path / "sigmoid.zip", one_float_channel), "produces 1 float channel")
    assert "not class probabilities" in msg

    def raw_stardist(rdf):
        out = rdf["outputs"][0]
        out["postprocessing"] = []
        out["data"] = {"type": "float32"}
        out["axes"][-1]["channel_names"] = ["prob"] + [f"dist{i}" for i in range(16)]
        out["test_tensor"].pop("sha256")

    msg = refused(edited(instance["zip"], tmp_path / "raw.zip", raw_stardist), "stardist_postprocessing")
    assert "17 float channels" in msg

    def two_outputs(rdf):
        second = json.loads(json.dumps(rdf["outputs"][0]))
        second["id"] = "extra"
        rdf["outputs"].append(second)

    refused(edited(semantic["zip"], tmp_path / "two.zip", two_outputs), "2 outputs")
