"""bioimage.io export: real tiny models trained on S. aureus at ds2, packaged, tested offline with
bioimageio.core's own `test_model` (all weight formats, ONNX included, GitHub handles present),
reloaded, opened the TF1 way and with onnxruntime, and their samples and macro opened in ImageJ."""

from __future__ import annotations

import json
import re
import zipfile

import numpy as np
import pandas as pd
import pytest

from rescale4dl_bmz.cli.main import main
from rescale4dl_bmz.errors import InputError

FACTOR = "ds2"


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def saureus_ds2(shared_data):
    from rescale4dl_bmz.files.images import read_image, read_mask, read_pixel_size
    from rescale4dl_bmz.data.rescale import rescale_pair

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
            rows.append({"factor": name, "scale": s, "pixel_size_um": pixel * s if pixel else None, "grid": grid, "n_images": 3,
                         "iou_mean": ious.mean(), "iou_ci_low": ious.min(), "iou_ci_high": ious.max(),
                         "mean_object_area_px": 150.0 / s ** 2, "throughput": 512 * 512 / (150.0 / s ** 2),
                         "bytes_per_object": 300.0 / s ** 2, "status": status})
    pd.DataFrame(rows).to_csv(root / "summary.csv", index=False)
    pd.DataFrame(per).to_csv(root / "per_image.csv", index=False)
    return root


def trained_run(root, task, data, *, known_pixel=True):
    """write_run + a real (tiny) model trained on ds2 tiles + the ds2 image (and mask) at ds2."""
    from rescale4dl_bmz.files.images import write_tiff
    from rescale4dl_bmz.models import make_config, train_model

    image, mask, pixel = data
    write_run(root, task, pixel if known_pixel else None)
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
    write_tiff(root / FACTOR / "masks" / "1.tif", mask, pixel * 2)
    if task == "semantic":  # the sweep's figure becomes the second cover
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(4, 3))
        FigureCanvasAgg(fig)
        fig.add_subplot().plot([1, 2, 4], [0.7, 0.8, 0.75])
        (root / "figures").mkdir()
        fig.savefig(root / "figures" / "iou_vs_coverage.png")
    return root


AUTHOR = "Ada Lovelace:ada-lovelace:0000-0002-1825-0097"
MAINTAINER = "Grace Hopper:grace-hopper"


@pytest.fixture(scope="module")
def semantic_packages(tmp_path_factory, saureus_ds2):
    """The package (Python API, full metadata, tested below) and the deepImageJ variant (CLI, --no-test)."""
    from rescale4dl_bmz.bioimageio.export import export_package

    root = tmp_path_factory.mktemp("export_semantic")
    run = trained_run(root / "run", "semantic", saureus_ds2)
    meta = {"authors": [AUTHOR, {"name": "Alan Turing", "affiliation": "Bletchley Park"}],
            "maintainers": [MAINTAINER], "version": "1.2.0", "git_repo": "https://github.com/example/rescale-models",
            "data_license": "CC-BY-4.0", "data_citation": "S. aureus example data of the ReScale4DL authors"}
    bmz = export_package(run, None, root / "semantic.zip", run_test=False, metadata=meta)
    code = main(["export", str(run), "--variant", "deepimagej", "--out", str(root / "semantic_dij.zip"), "--no-test",
                 "--author", AUTHOR, "--version", "1.2.0"])
    return {"run": run, "bioimageio": bmz, "deepimagej": root / "semantic_dij.zip", "cli_code": code,
            "pixel": saureus_ds2[2] * 2}


@pytest.fixture(scope="module")
def semantic_test(semantic_packages):
    from rescale4dl_bmz.bioimageio.export import check_package

    return check_package(semantic_packages["bioimageio"])


@pytest.fixture(scope="module")
def instance_package(tmp_path_factory, saureus_ds2):
    """An instance package of a run whose original pixel size is unknown."""
    from rescale4dl_bmz.bioimageio.export import export_package

    root = tmp_path_factory.mktemp("export_instance")
    run = trained_run(root / "run", "instance", saureus_ds2, known_pixel=False)
    return {"run": run, "bioimageio": export_package(run, FACTOR, root / "instance.zip", run_test=False)}


def load(zip_path):
    """The description, loaded with IO checks and the package's own GitHub handles accepted offline."""
    from bioimageio.spec import load_description
    from bioimageio.spec.model import v0_5

    from rescale4dl_bmz.bioimageio.export.package import known_github_users, package_github_users

    with known_github_users(package_github_users(zip_path)):
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


def extract(zip_path, name, folder):
    target = folder / name
    target.write_bytes(member(zip_path, name))
    return target


# ----------------------------------------------------------------------------- semantic

def test_semantic_package_passes_bioimageio_test_with_github_handles(semantic_packages, semantic_test):
    assert semantic_test.status == "passed", semantic_test.format()
    tested = {d.loc[-1] for d in semantic_test.details if d.loc and d.loc[0] == "weights"}
    assert {"keras_v3", "keras_hdf5", "tensorflow_saved_model_bundle", "onnx"} <= tested
    assert "github_user: ada-lovelace" in rdf(semantic_packages["bioimageio"])
    from bioimageio.spec._internal.constants import KNOWN_GITHUB_USERS

    assert "ada-lovelace" not in KNOWN_GITHUB_USERS  # the offline allowance does not outlive the test


def test_semantic_package_metadata_has_no_validator_warnings(semantic_packages):
    descr = load(semantic_packages["bioimageio"])
    warnings = [w.msg for d in descr.validation_summary.details for w in d.warnings]
    assert warnings == []
    assert [(a.name, a.github_user, a.orcid) for a in descr.authors] == [
        ("Ada Lovelace", "ada-lovelace", "0000-0002-1825-0097"), ("Alan Turing", None, None)]
    assert [(m.name, m.github_user) for m in descr.maintainers] == [("Grace Hopper", "grace-hopper")]
    assert str(descr.version) == "1.2.0" and str(descr.git_repo) == "https://github.com/example/rescale-models"
    rescale_cite = next(c for c in descr.cite if str(c.doi) == "10.1101/2025.04.09.647871")
    assert "Mariana G. Ferreira" in rescale_cite.text and "Estibaliz Gómez-de-Mariscal" in rescale_cite.text
    assert "..." not in rescale_cite.text
    assert "10.1007/978-3-319-24574-4_28" in {str(c.doi) for c in descr.cite}
    assert {"unet", "onnx", "deepimagej", "semantic-segmentation"} <= set(descr.tags)
    data = descr.config.model_dump()["rescale4dl"]["training_data"]
    assert data["name"] == "saureus_crop" and data["license"] == "CC-BY-4.0"
    assert data["n_images"] == 1 and data["n_objects"] == 127  # the real mask's cocci
    readme = member(semantic_packages["bioimageio"], "README.md").decode()
    assert "127 annotated objects" in readme and "licence: CC-BY-4.0" in readme
    assert "/lab/private" not in rdf(semantic_packages["bioimageio"])  # no local paths in public metadata


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
    assert cfg["rescale4dl"]["factor"] == FACTOR and cfg["rescale4dl"]["variant_of"] is None
    assert cfg["rescale4dl"]["pixel_size_um"] == pytest.approx(expected, rel=1e-12)
    sweep = pd.DataFrame(cfg["rescale4dl"]["sweep"])
    merged = sweep.merge(table, on=["factor", "grid"], suffixes=("", "_csv"))
    assert len(merged) == len(table)
    np.testing.assert_allclose(merged["iou_mean"], merged["iou_mean_csv"])
    np.testing.assert_allclose(merged["throughput"], merged["throughput_csv"])
    dij = cfg["deepimagej"]
    assert dij["pyramidal_model"] is False and dij["allow_tiling"] is True
    assert f"{expected:.6g} µm" == dij["test_information"]["inputs"][0]["pixel_size"]["x"]
    pre = [p for p in descr.inputs[0].preprocessing if p.id == "scale_range"]
    assert len(pre) == 1 and pre[0].kwargs.min_percentile == 1.0 and pre[0].kwargs.max_percentile == 99.8


def test_semantic_package_ships_the_postprocessing_macro(semantic_packages):
    from rescale4dl_bmz.imagej.install import macro_path

    descr = load(semantic_packages["bioimageio"])
    post = descr.config.model_dump()["deepimagej"]["prediction"]["postprocess"]
    assert post == [{"spec": "ij.IJ::runMacroFile", "kwargs": "semantic_to_instances.ijm"}]
    assert "semantic_to_instances.ijm" in {str(a.source).rsplit("/", 1)[-1] for a in descr.attachments}
    assert member(semantic_packages["bioimageio"], "semantic_to_instances.ijm") == \
        macro_path("semantic_to_instances.ijm").read_bytes()
    readme = member(semantic_packages["bioimageio"], "README.md").decode()
    assert "## Post-processing (labels in Fiji)" in readme and "semantic_to_instances.ijm" in readme


def test_covers_are_2_to_1_image_and_segmentation(semantic_packages, tmp_path):
    from matplotlib.image import imread

    descr = load(semantic_packages["bioimageio"])
    names = [str(c.source).rsplit("/", 1)[-1] for c in descr.covers]
    assert names == ["cover.png", "cover_iou.png"]
    for name in names:
        h, w = imread(extract(semantic_packages["bioimageio"], name, tmp_path)).shape[:2]
        assert w == 2 * h
    cover = imread(tmp_path / "cover.png")
    left, right = cover[:, : cover.shape[1] // 2, :3], cover[:, cover.shape[1] // 2:, :3]
    assert np.abs(left - right).max() > 0.2  # the right half shows the segmentation over the image


def test_onnx_and_savedmodel_reproduce_test_tensors(semantic_packages, tmp_path):
    from rescale4dl_bmz.bioimageio.export.tensors import scale_range
    from rescale4dl_bmz.bioimageio.export.weights import run_onnx, run_tf1_saved_model

    zip_path = semantic_packages["bioimageio"]
    x = npy(zip_path, "test_input.npy")
    pre = scale_range(x[0, ..., 0], 1.0, 99.8)[None, ..., None]
    expected = npy(zip_path, "test_output.npy")
    np.testing.assert_allclose(run_onnx(extract(zip_path, "model.onnx", tmp_path), pre), expected, atol=1e-4)
    with zipfile.ZipFile(extract(zip_path, "tf_saved_model.zip", tmp_path)) as zf:
        zf.extractall(tmp_path / "saved_model")
    np.testing.assert_allclose(run_tf1_saved_model(tmp_path / "saved_model", pre, "input", "output"), expected,
                               atol=1e-4)
    import onnx

    assert onnx.load(str(tmp_path / "model.onnx")).opset_import[0].version <= 18  # JDLL's ONNX engines: 6-18


OPEN_MACRO = """
open(getArgument());
getDimensions(w, h, c, z, t);
getPixelSize(unit, pw, ph);
return "" + w + " " + h + " " + c + " " + z + " " + bitDepth() + " " + pw + " " + unit;
"""


def imagej_open(paths, tmp_path) -> list[list[str]]:
    """Open each file in ImageJ 1.x (the project's bridge); width, height, channels, slices, bit depth, pixel, unit."""
    from rescale4dl_bmz.imagej.bridge import ImageJ

    macro = tmp_path / "open_and_describe.ijm"
    macro.write_text(OPEN_MACRO)
    with ImageJ(timeout=60) as ij:
        return [ij.run_macro(macro, str(p), file=p).split(" ") for p in paths]


def test_sample_images_open_in_imagej_with_channels_and_calibration(semantic_packages, instance_package, tmp_path):
    sem, inst = semantic_packages["bioimageio"], instance_package["bioimageio"]
    (tmp_path / "i").mkdir()
    files = [extract(sem, "sample_input.tif", tmp_path), extract(sem, "sample_output.tif", tmp_path),
             extract(inst, "sample_output.tif", tmp_path / "i")]
    (s_in, s_out, i_out) = imagej_open(files, tmp_path)
    side = str(npy(sem, "test_input.npy").shape[1])
    px = semantic_packages["pixel"]
    assert s_in[:5] == [side, side, "1", "1", "32"] and float(s_in[5]) == pytest.approx(px, rel=1e-5)
    assert s_out[:5] == [side, side, "3", "1", "32"] and float(s_out[5]) == pytest.approx(px, rel=1e-5)
    assert s_in[6] in ("micron", "microns", "µm") and s_out[6] == s_in[6]
    assert i_out[2:5] == ["1", "1", "16"] and i_out[5] == "1" and i_out[6] in ("pixel", "pixels")  # unknown size
    import tifffile

    np.testing.assert_array_equal(np.moveaxis(tifffile.imread(files[1]), 0, -1), npy(sem, "test_output.npy")[0])


def test_macro_turns_the_sample_output_into_labels(semantic_packages, tmp_path):
    """The package's own macro, run by ImageJ on the package's real network output, against Python."""
    import tifffile
    from stardist.matching import matching

    from rescale4dl_bmz.imagej.bridge import ImageJ
    from test_semantic_macro import python_instances

    zip_path = semantic_packages["bioimageio"]
    sample = extract(zip_path, "sample_output.tif", tmp_path)
    macro = extract(zip_path, "semantic_to_instances.ijm", tmp_path)
    with ImageJ(timeout=120) as ij:
        ij.run_macro(macro, {"input": sample, "output": tmp_path / "labels.tif"}, file=sample)
    labels = tifffile.imread(tmp_path / "labels.tif")
    expected = python_instances(npy(zip_path, "test_output.npy")[0].argmax(-1).astype(np.uint8))
    # a noisy tiny model: many objects near 10 px, where ImageJ's 8-connected particles and the
    # growth's tie-breaking can flip an object across the size limit (measured: 10 of 65536 px)
    assert np.mean((labels > 0) != (expected > 0)) <= 1e-3
    m = matching(expected, labels, thresh=0.5)
    assert expected.max() > 0 and m.f1 >= 0.9


def test_deepimagej_variant_is_marked_as_variant(semantic_packages):
    assert semantic_packages["cli_code"] == 0
    descr = load(semantic_packages["deepimagej"])
    for a in space_axes(descr):
        assert a.scale == 1.0 and a.unit is None
    cfg = descr.config.model_dump()
    assert cfg["rescale4dl"]["variant_of"] == load(semantic_packages["bioimageio"]).name
    assert "variant" in descr.name and "variant" in descr.description
    value = float(re.match(r"([0-9.eE+-]+) µm", cfg["deepimagej"]["test_information"]["inputs"][0]["pixel_size"]["x"]).group(1))
    assert value == pytest.approx(semantic_packages["pixel"], rel=1e-5)
    assert [a.github_user for a in descr.authors] == ["ada-lovelace"]


# ----------------------------------------------------------------------------- instance, unknown pixel size

def test_instance_package_passes_bioimageio_test(instance_package):
    from rescale4dl_bmz.bioimageio.export import check_package

    summary = check_package(instance_package["bioimageio"])
    assert summary.status == "passed", summary.format()
    assert "onnx" in {d.loc[-1] for d in summary.details if d.loc and d.loc[0] == "weights"}


def test_instance_package_outputs_labels_with_stardist_postprocessing(instance_package):
    descr = load(instance_package["bioimageio"])
    post = descr.outputs[0].postprocessing
    assert [p.id for p in post if p.id != "ensure_dtype"] == ["stardist_postprocessing"]
    thresholds = json.loads((instance_package["run"] / FACTOR / "model" / "stardist" / "thresholds.json").read_text())
    assert post[0].kwargs.prob_threshold == pytest.approx(thresholds["prob"])
    assert post[0].kwargs.nms_threshold == pytest.approx(thresholds["nms"])
    assert tuple(post[0].kwargs.grid) == (2, 2) and post[0].kwargs.n_rays == 16
    labels = npy(instance_package["bioimageio"], "test_output.npy")
    x = npy(instance_package["bioimageio"], "test_input.npy")
    assert labels.dtype == np.int32 and labels.shape == x.shape and labels.max() >= 1
    assert "10.1007/978-3-030-00934-2_30" in {str(c.doi) for c in descr.cite}
    readme = member(instance_package["bioimageio"], "README.md").decode()
    assert "StarDist 2D NMS" in readme  # the post-processing route in deepImageJ/Fiji


def test_unknown_pixel_size_claims_no_physical_size(instance_package):
    descr = load(instance_package["bioimageio"])
    assert all(a.scale == 1.0 and a.unit is None for a in space_axes(descr))
    assert "µm" not in descr.name + descr.description and "nm pixels" not in descr.name
    cfg = descr.config.model_dump()
    assert cfg["deepimagej"]["test_information"]["inputs"][0]["pixel_size"]["x"] == "1 pixel"
    assert cfg["rescale4dl"]["pixel_size_um"] is None
    readme = member(instance_package["bioimageio"], "README.md").decode()
    assert "## Recommended sampling" in readme and "Recommended acquisition pixel size" not in readme
    assert "was not given" in readme and "Image › Properties" in readme and "--pixel-size" in readme
    assert "unknown of" not in readme and "pixel size on the axes" not in readme


# ----------------------------------------------------------------------------- helpers

def test_exact_scale_keeps_reference_sizes_integral():
    from rescale4dl_bmz.bioimageio.export.describe import exact_scale

    n = np.arange(1, 2 ** 17, dtype=np.float64)
    assert np.count_nonzero(np.floor(n * 0.1598 / 0.1598) != n) > 1000  # the spec's rounding problem is real
    for p in (0.1598, 0.0799, 0.08, 0.16, 0.3196011377800505, 1.7, 123.456):
        q = exact_scale(p)
        assert abs(q - p) / p < 2 ** -35
        assert np.array_equal(np.floor(n * q / q), n)
    assert exact_scale(0.5) == 0.5


def test_halo_and_min_tile():
    from rescale4dl_bmz.bioimageio.export.describe import halo_px, min_tile

    assert halo_px(None, 4) == 4
    assert halo_px(49, 4) == 28 and halo_px(49, 16) == 32
    assert halo_px(1000, 8) == 128
    for div, halo in ((4, 28), (16, 32), (8, 128)):
        m = min_tile(div, halo)
        assert m % div == 0 and m - 2 * halo == div  # any test input of >= div px fits after halo padding


def test_package_metadata_parsing_and_validation():
    from rescale4dl_bmz.bioimageio.export.metadata import make_metadata, orcid_checksum_ok

    meta = make_metadata(authors=[AUTHOR, "Alan Turing"])
    assert [p.github_user for p in meta.maintainer_list] == ["ada-lovelace"]  # authors with a handle
    assert meta.github_users == ["ada-lovelace"] and meta.version == "0.1.0"
    assert make_metadata().author_list[0].name == "rescale4dl_bmz user"
    assert orcid_checksum_ok("0000-0002-1825-0097") and not orcid_checksum_ok("0000-0002-1825-0096")
    for bad, match in (({"authors": ["A::0000-0002-1825-0096"]}, "ORCID"), ({"maintainers": ["Nobody"]}, "GitHub"),
                       ({"authors": ["A:-bad-"]}, "GitHub user"), ({"git_repo": "ftp://x"}, "https"),
                       ({"version": "one"}, "version"), ({"data_doi": "nope"}, "DOI")):
        with pytest.raises(InputError, match=match):
            make_metadata(**bad)


def test_sweep_config_takes_package_metadata(tmp_path):
    from rescale4dl_bmz.sweep.config import make_sweep_config

    cfg = make_sweep_config(images=tmp_path, masks=tmp_path, out=tmp_path / "o", task="semantic",
                            package={"authors": [{"name": "Ada", "github_user": "ada"}], "version": "2.0"})
    assert cfg.package.maintainer_list[0].github_user == "ada" and "github_user: ada" in cfg.to_yaml()
    with pytest.raises(InputError, match="package"):
        make_sweep_config(images=tmp_path, masks=tmp_path, out=tmp_path / "o", task="semantic",
                          package={"authors": ["x"], "unknown": 1})


# ----------------------------------------------------------------------------- bad input

@pytest.fixture
def bare_run(tmp_path):
    return write_run(tmp_path / "run", "semantic", 0.08)


def _nothing_written(path):
    assert not path.exists()
    assert not list(path.parent.glob(f".{path.name}*"))


def test_factor_without_model_is_refused(bare_run, tmp_path):
    from rescale4dl_bmz.bioimageio.export import export_package

    out = tmp_path / "out" / "p.zip"
    with pytest.raises(InputError, match="no trained model"):
        export_package(bare_run, "og", out)
    _nothing_written(out)
    assert main(["export", str(bare_run), "--factor", "ds2", "--out", str(out)]) == 2
    _nothing_written(out)


def test_run_without_finished_factors_is_refused(tmp_path):
    from rescale4dl_bmz.bioimageio.export import export_package

    run = write_run(tmp_path / "run", "semantic", 0.08, statuses=("failed", "pruned"))
    out = tmp_path / "p.zip"
    with pytest.raises(InputError, match="no finished factor"):
        export_package(run, None, out)
    with pytest.raises(InputError, match="not a sweep run folder"):
        export_package(tmp_path, None, out)
    _nothing_written(out)


@pytest.mark.parametrize("pixel", [0.0, -0.08, float("nan")])
def test_non_positive_pixel_size_is_refused(bare_run, tmp_path, pixel):
    from rescale4dl_bmz.bioimageio.export import export_package

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
    from rescale4dl_bmz.bioimageio.export.package import find_test_image
    from rescale4dl_bmz.files.run_folder import load_run

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
    from rescale4dl_bmz.bioimageio.export import export_package

    with pytest.raises(InputError, match=r"\.zip"):
        export_package(bare_run, "ds2", tmp_path / "p.tar")
    with pytest.raises(InputError, match="variant"):
        export_package(bare_run, "ds2", tmp_path / "p.zip", variant="onnx")
    with pytest.raises(InputError, match="not finished|has not finished"):
        export_package(bare_run, "ds8", tmp_path / "p.zip")
    with pytest.raises(InputError, match="license"):
        export_package(bare_run, "ds2", tmp_path / "p.zip", license_id="not-a-licence")
    with pytest.raises(InputError, match="data licence"):
        export_package(bare_run, "ds2", tmp_path / "p.zip", metadata={"data_license": "nope"})
    assert main(["export", str(bare_run), "--out", str(tmp_path / "p.zip"), "--author", "A::123"]) == 2
    assert not list(tmp_path.glob("p.*"))
