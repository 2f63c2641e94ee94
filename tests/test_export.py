"""bioimage.io export: real tiny models trained on S. aureus at ds2, packaged, tested offline with
bioimageio.core's own `test_model`, reloaded, and opened the TF1 way (as deepImageJ does)."""

from __future__ import annotations

import json
import re
import zipfile

import numpy as np
import pandas as pd
import pytest

from rescale4dl_bmz.cli import main
from rescale4dl_bmz.errors import InputError

FACTOR = "ds2"


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def saureus_ds2(shared_data):
    from rescale4dl_bmz.dataset import read_image, read_mask, read_pixel_size
    from rescale4dl_bmz.rescale import rescale_pair

    folder = shared_data / "saureus_crop"
    image, mask = read_image(folder / "images" / "1.tif"), read_mask(folder / "masks" / "1.tif")
    pixel = read_pixel_size(folder / "images" / "1.tif")
    assert pixel == pytest.approx(0.0799, rel=1e-3)
    im2, m2 = rescale_pair(image, mask, FACTOR)
    return im2, m2, pixel


def write_run(root, task, pixel, *, statuses=("done", "done")):
    """A run folder with og and ds2 rows on both grids (og has no model), as the sweep writes it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "run.json").write_text(json.dumps({"task": task, "pixel_size_um": pixel, "factors": ["og", FACTOR],
                                               "image_shape": [512, 512],
                                               "dataset": "/lab/private/saureus_crop/images"}))
    rows, per = [], []
    for (name, s), status in zip((("og", 1), (FACTOR, 2)), statuses):
        for grid in ("sampled", "native"):
            ious = np.array([0.70, 0.74, 0.72]) + 0.02 * s
            per += [{"factor": name, "scale": s, "grid": grid, "image": f"im{i}", "iou": v} for i, v in enumerate(ious)]
            rows.append({"factor": name, "scale": s, "pixel_size_um": pixel * s, "grid": grid, "n_images": 3,
                         "iou_mean": ious.mean(), "iou_ci_low": ious.min(), "iou_ci_high": ious.max(),
                         "mean_object_area_px": 150.0 / s ** 2, "throughput": 512 * 512 / (150.0 / s ** 2),
                         "bytes_per_object": 300.0 / s ** 2, "status": status})
    pd.DataFrame(rows).to_csv(root / "summary.csv", index=False)
    pd.DataFrame(per).to_csv(root / "per_image.csv", index=False)
    return root


def trained_run(root, task, data):
    """write_run + a real (tiny) model trained on ds2 tiles + the ds2 image as test image."""
    from rescale4dl_bmz.dataset import write_tiff
    from rescale4dl_bmz.models import make_config, train_model

    image, mask, pixel = data
    write_run(root, task, pixel)
    tiles = [(slice(0, 128), slice(0, 128)), (slice(0, 128), slice(128, 256)),
             (slice(128, 256), slice(0, 128)), (slice(128, 256), slice(128, 256))]
    if task == "semantic":
        cfg = make_config("semantic", factor=FACTOR, pixel_size_um=pixel * 2, steps=4, patch_size=64, batch_size=2,
                          architecture={"kind": "unet", "depth": 2, "base_filters": 4})
    else:
        cfg = make_config("instance", factor=FACTOR, pixel_size_um=pixel * 2, steps=30, patch_size=64, batch_size=2,
                          learning_rate=3e-3, architecture={"kind": "stardist", "depth": 2, "base_filters": 8,
                                                             "n_rays": 16, "grid": 2, "conv_after_unet": 16})
    train_model([image[t] for t in tiles], [mask[t] for t in tiles], cfg, root / FACTOR / "model")
    write_tiff(root / FACTOR / "images" / "1.tif", image.astype(np.float32), pixel * 2)
    if task == "semantic":  # the sweep's figure becomes the cover
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(4, 2))
        FigureCanvasAgg(fig)
        fig.add_subplot().plot([1, 2, 4], [0.7, 0.8, 0.75])
        (root / "figures").mkdir()
        fig.savefig(root / "figures" / "iou_vs_coverage.png")
    return root


@pytest.fixture(scope="module")
def semantic_packages(tmp_path_factory, saureus_ds2):
    """bioimageio variant via the Python API (untested here), deepImageJ variant via the CLI (tested)."""
    from rescale4dl_bmz.export import export_package

    root = tmp_path_factory.mktemp("export_semantic")
    run = trained_run(root / "run", "semantic", saureus_ds2)
    bmz = export_package(run, None, root / "semantic.zip", run_test=False, authors=["Ada Lovelace"])
    code = main(["export", str(run), "--variant", "deepimagej", "--out", str(root / "semantic_dij.zip")])
    return {"run": run, "bioimageio": bmz, "deepimagej": root / "semantic_dij.zip", "cli_code": code,
            "pixel": saureus_ds2[2] * 2}


@pytest.fixture(scope="module")
def instance_packages(tmp_path_factory, saureus_ds2):
    from rescale4dl_bmz.export import export_package

    root = tmp_path_factory.mktemp("export_instance")
    run = trained_run(root / "run", "instance", saureus_ds2)
    bmz = export_package(run, FACTOR, root / "instance.zip", run_test=False)
    dij = export_package(run, FACTOR, root / "instance_dij.zip", variant="deepimagej", run_test=False)
    return {"run": run, "bioimageio": bmz, "deepimagej": dij, "pixel": saureus_ds2[2] * 2}


def load(zip_path):
    from bioimageio.spec import load_description
    from bioimageio.spec.model import v0_5

    descr = load_description(zip_path, perform_io_checks=True)
    assert isinstance(descr, v0_5.ModelDescr), getattr(descr, "validation_summary", descr)
    return descr


def space_axes(descr):
    return [a for t in (*descr.inputs, *descr.outputs) for a in t.axes if a.type == "space"]


def rdf(zip_path) -> str:
    with zipfile.ZipFile(zip_path) as zf:
        return zf.read("rdf.yaml").decode()


def member(zip_path, name) -> bytes:
    with zipfile.ZipFile(zip_path) as zf:
        return zf.read(name)


def npy(zip_path, name) -> np.ndarray:
    import io

    return np.load(io.BytesIO(member(zip_path, name)))


# ----------------------------------------------------------------------------- semantic

def test_semantic_package_passes_bioimageio_test(semantic_packages):
    from rescale4dl_bmz.export import check_package

    summary = check_package(semantic_packages["bioimageio"])
    assert summary.status == "passed", summary.format()
    tested = {d.loc[-1] for d in summary.details if d.loc and d.loc[0] == "weights"}
    assert {"keras_v3", "keras_hdf5", "tensorflow_saved_model_bundle"} <= tested


def test_semantic_package_axes_carry_recommended_pixel_size(semantic_packages):
    descr = load(semantic_packages["bioimageio"])
    table = pd.read_csv(semantic_packages["run"] / "summary.csv")
    expected = float(table.loc[table["factor"] == FACTOR, "pixel_size_um"].iloc[0])
    axes = space_axes(descr)
    assert len(axes) == 4  # y, x of input and output
    for a in axes:
        assert a.unit == "micrometer"
        assert a.scale == pytest.approx(expected, rel=1e-9)
    cfg = descr.config.model_dump()
    assert cfg["rescale4dl"]["factor"] == FACTOR
    assert cfg["rescale4dl"]["pixel_size_um"] == pytest.approx(expected, rel=1e-12)
    sweep = pd.DataFrame(cfg["rescale4dl"]["sweep"])
    assert len(sweep) == len(table)
    merged = sweep.merge(table, on=["factor", "grid"], suffixes=("", "_csv"))
    np.testing.assert_allclose(merged["iou_mean"], merged["iou_mean_csv"])
    np.testing.assert_allclose(merged["iou_ci_low"], merged["iou_ci_low_csv"])
    np.testing.assert_allclose(merged["throughput"], merged["throughput_csv"])
    dij = cfg["deepimagej"]
    assert dij["pyramidal_model"] is False and dij["allow_tiling"] is True
    assert f"{expected:.6g} µm" == dij["test_information"]["inputs"][0]["pixel_size"]["x"]


def test_semantic_package_preprocessing_and_metadata(semantic_packages):
    descr = load(semantic_packages["bioimageio"])
    pre = [p for p in descr.inputs[0].preprocessing if p.id == "scale_range"]
    assert len(pre) == 1 and pre[0].kwargs.min_percentile == 1.0 and pre[0].kwargs.max_percentile == 99.8
    assert [a.name for a in descr.authors] == ["Ada Lovelace"]
    text = rdf(semantic_packages["bioimageio"])
    assert "github_user" not in text and "maintainers" not in text
    assert "/lab/private" not in text and "saureus_crop" in text  # no local paths in public metadata
    dois = {str(c.doi) for c in descr.cite}
    assert {"10.1101/2025.04.09.647871", "10.1007/978-3-319-24574-4_28"} <= dois
    assert [str(c.source).rsplit("/", 1)[-1] for c in descr.covers] == ["cover.png"] and descr.documentation is not None
    cover = (semantic_packages["run"] / "figures" / "iou_vs_coverage.png").read_bytes()
    assert member(semantic_packages["bioimageio"], "cover.png") == cover
    readme = member(semantic_packages["bioimageio"], "README.md").decode()
    assert "Recommended acquisition pixel size" in readme and "## Validation" in readme
    assert f"{semantic_packages['pixel']:.4g} µm" in readme
    assert readme.count(f"| **{FACTOR}** (chosen)") == 2  # one row per grid
    # expected output = the Keras model on the PREPROCESSED test input
    x = npy(semantic_packages["bioimageio"], "test_input.npy")
    y = npy(semantic_packages["bioimageio"], "test_output.npy")
    assert x.shape[:3] == y.shape[:3] and y.shape[-1] == 3
    np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)


def test_savedmodel_opens_with_tf1_session_loader(semantic_packages, tmp_path):
    from rescale4dl_bmz.export.tensors import scale_range
    from rescale4dl_bmz.export.weights import run_tf1_saved_model

    zip_path = semantic_packages["bioimageio"]
    (tmp_path / "tf.zip").write_bytes(member(zip_path, "tf_saved_model.zip"))
    with zipfile.ZipFile(tmp_path / "tf.zip") as zf:
        zf.extractall(tmp_path / "saved_model")
    x = npy(zip_path, "test_input.npy")
    pre = scale_range(x[0, ..., 0], 1.0, 99.8)[None, ..., None]
    out = run_tf1_saved_model(tmp_path / "saved_model", pre, "input", "output")
    np.testing.assert_allclose(out, npy(zip_path, "test_output.npy"), atol=1e-4)


def test_deepimagej_variant_via_cli_has_unit_scales(semantic_packages):
    assert semantic_packages["cli_code"] == 0  # the CLI ran bioimageio.core's test, which passed
    descr = load(semantic_packages["deepimagej"])
    for a in space_axes(descr):
        assert a.scale == 1.0 and a.unit is None
    info = descr.config.model_dump()["deepimagej"]["test_information"]
    value = float(re.match(r"([0-9.eE+-]+) µm", info["inputs"][0]["pixel_size"]["x"]).group(1))
    assert value == pytest.approx(semantic_packages["pixel"], rel=1e-5)
    readme = member(semantic_packages["deepimagej"], "README.md").decode()
    assert "test_information" in readme and f"{semantic_packages['pixel']:.4g} µm" in readme


# ----------------------------------------------------------------------------- instance

def test_instance_package_passes_bioimageio_test(instance_packages):
    from rescale4dl_bmz.export import check_package

    summary = check_package(instance_packages["bioimageio"])
    assert summary.status == "passed", summary.format()


def test_instance_package_outputs_labels_with_stardist_postprocessing(instance_packages):
    descr = load(instance_packages["bioimageio"])
    post = descr.outputs[0].postprocessing
    assert [p.id for p in post if p.id != "ensure_dtype"] == ["stardist_postprocessing"]
    thresholds = json.loads((instance_packages["run"] / FACTOR / "model" / "stardist" / "thresholds.json").read_text())
    assert post[0].kwargs.prob_threshold == pytest.approx(thresholds["prob"])
    assert post[0].kwargs.nms_threshold == pytest.approx(thresholds["nms"])
    assert tuple(post[0].kwargs.grid) == (2, 2) and post[0].kwargs.n_rays == 16
    labels = npy(instance_packages["bioimageio"], "test_output.npy")
    x = npy(instance_packages["bioimageio"], "test_input.npy")
    assert labels.dtype == np.int32 and labels.shape == x.shape and labels.max() >= 1
    for a in space_axes(descr):
        assert a.unit == "micrometer" and a.scale == pytest.approx(instance_packages["pixel"], rel=1e-9)
    assert "10.1007/978-3-030-00934-2_30" in {str(c.doi) for c in descr.cite}


def test_instance_deepimagej_variant_reloads(instance_packages):
    descr = load(instance_packages["deepimagej"])
    assert all(a.scale == 1.0 and a.unit is None for a in space_axes(descr))
    assert descr.outputs[0].postprocessing[0].id == "stardist_postprocessing"
    info = descr.config.model_dump()["deepimagej"]["test_information"]
    assert info["inputs"][0]["pixel_size"]["y"] == f"{instance_packages['pixel']:.6g} µm"


@pytest.mark.slow
def test_instance_deepimagej_variant_passes_bioimageio_test(instance_packages):
    from rescale4dl_bmz.export import check_package

    summary = check_package(instance_packages["deepimagej"])
    assert summary.status == "passed", summary.format()


# ----------------------------------------------------------------------------- helpers

def test_exact_scale_keeps_reference_sizes_integral():
    from rescale4dl_bmz.export.describe import exact_scale

    n = np.arange(1, 2 ** 17, dtype=np.float64)
    assert np.count_nonzero(np.floor(n * 0.1598 / 0.1598) != n) > 1000  # the spec's rounding problem is real
    for p in (0.1598, 0.0799, 0.08, 0.16, 0.3196011377800505, 1.7, 123.456):
        q = exact_scale(p)
        assert abs(q - p) / p < 2 ** -35
        assert np.array_equal(np.floor(n * q / q), n)
    assert exact_scale(0.5) == 0.5


def test_halo_and_min_tile():
    from rescale4dl_bmz.export.describe import halo_px, min_tile

    assert halo_px(None, 4) == 4
    assert halo_px(49, 4) == 28 and halo_px(49, 16) == 32
    assert halo_px(1000, 8) == 128
    for div, halo in ((4, 28), (16, 32), (8, 128)):
        m = min_tile(div, halo)
        assert m % div == 0 and m - 2 * halo == div  # any test input of >= div px fits after halo padding


# ----------------------------------------------------------------------------- bad input

@pytest.fixture
def bare_run(tmp_path):
    return write_run(tmp_path / "run", "semantic", 0.08)


def _nothing_written(path):
    assert not path.exists()
    assert not list(path.parent.glob(f".{path.name}*"))


def test_factor_without_model_is_refused(bare_run, tmp_path):
    from rescale4dl_bmz.export import export_package

    out = tmp_path / "out" / "p.zip"
    with pytest.raises(InputError, match="no trained model"):
        export_package(bare_run, "og", out)
    _nothing_written(out)
    assert main(["export", str(bare_run), "--factor", "ds2", "--out", str(out)]) == 2
    _nothing_written(out)


def test_run_without_finished_factors_is_refused(tmp_path):
    from rescale4dl_bmz.export import export_package

    run = write_run(tmp_path / "run", "semantic", 0.08, statuses=("failed", "pruned"))
    out = tmp_path / "p.zip"
    with pytest.raises(InputError, match="no finished factor"):
        export_package(run, None, out)
    with pytest.raises(InputError, match="not a sweep run folder"):
        export_package(tmp_path, None, out)
    _nothing_written(out)


@pytest.mark.parametrize("pixel", [0.0, -0.08, float("nan")])
def test_non_positive_pixel_size_is_refused(bare_run, tmp_path, pixel):
    from rescale4dl_bmz.export import export_package

    out = tmp_path / "p.zip"
    with pytest.raises(InputError, match="pixel size"):
        export_package(bare_run, "ds2", out, pixel_size_um=pixel)
    meta = json.loads((bare_run / "run.json").read_text())
    meta["pixel_size_um"] = pixel
    (bare_run / "run.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="pixel"):
        export_package(bare_run, "ds2", out)
    _nothing_written(out)


def test_test_image_prefers_held_out_images(bare_run):
    from rescale4dl_bmz.export.package import find_test_image
    from rescale4dl_bmz.run_folder import load_run

    with pytest.raises(InputError, match="--test-image"):
        find_test_image(load_run(bare_run), "ds2")
    folder = bare_run / "ds2" / "images"
    folder.mkdir(parents=True)
    for name in ("a", "b", "c"):
        (folder / f"{name}.tif").write_bytes(b"")
    assert find_test_image(load_run(bare_run), "ds2").name == "a.tif"
    meta = json.loads((bare_run / "run.json").read_text())
    (bare_run / "run.json").write_text(json.dumps({**meta, "test": ["c"]}))
    assert find_test_image(load_run(bare_run), "ds2").name == "c.tif"


def test_bad_options_are_refused(bare_run, tmp_path):
    from rescale4dl_bmz.export import export_package

    with pytest.raises(InputError, match=r"\.zip"):
        export_package(bare_run, "ds2", tmp_path / "p.tar")
    with pytest.raises(InputError, match="variant"):
        export_package(bare_run, "ds2", tmp_path / "p.zip", variant="onnx")
    with pytest.raises(InputError, match="not finished|has not finished"):
        export_package(bare_run, "ds8", tmp_path / "p.zip")
    with pytest.raises(InputError, match="license"):
        export_package(bare_run, "ds2", tmp_path / "p.zip", license_id="not-a-licence")
    assert not list(tmp_path.glob("p.*"))
