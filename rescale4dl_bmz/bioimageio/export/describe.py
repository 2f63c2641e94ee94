"""The bioimage.io (spec 0.5) model description, built from small parts.

Authors and maintainers carry GitHub handles and ORCIDs when given (a handle makes
bioimageio.spec look the user up online: see `package.known_github_users`); citations by DOI;
output space axes carry the same scale and unit as the input's.
"""

from __future__ import annotations

import math
from pathlib import Path

from rescale4dl_bmz.bioimageio.export.docs import citations_for


def halo_px(receptive_field_px: float | None, divisor: int, cap: int = 128) -> int:
    """Half the receptive field, rounded up to a multiple of `divisor` (at least `divisor`, at most `cap`)."""
    if not receptive_field_px:
        return divisor
    h = math.ceil(receptive_field_px / 2 / divisor) * divisor
    return int(min(max(h, divisor), max(divisor, cap // divisor * divisor)))


def exact_scale(pixel_size: float, bits: int = 36) -> float:
    """The nearest float with at most `bits` significant bits (relative change < 2**-bits).

    The spec sizes an output axis as int(n * input.scale / output.scale); with equal scales the
    product n * p is rounded and the quotient falls just below n for ~8 % of tile sizes, so the
    output is declared one pixel smaller than it is and bioimageio.core's test fails. With a
    short mantissa n * p is exact for every n < 2**(53 - bits) and the quotient is n again.
    """
    if pixel_size <= 0 or not math.isfinite(pixel_size):
        raise ValueError(f"pixel size must be positive and finite, got {pixel_size!r}")
    exponent = math.frexp(pixel_size)[1]
    return math.ldexp(round(math.ldexp(pixel_size, bits - exponent)), exponent - bits)


def min_tile(divisor: int, halo: int) -> int:
    """Smallest input tile: both halos plus one `divisor` (so every test input >= divisor fits)."""
    return 2 * halo + divisor


def space_axes(v, kind: str, scale: float, unit: str | None, divisor: int, halo: int):
    """y and x axes: input axes parameterised by `divisor`, output axes sized like the input's."""
    out = []
    for a in ("y", "x"):
        if kind == "input":
            size = v.ParameterizedSize(min=min_tile(divisor, halo), step=divisor)
            out.append(v.SpaceInputAxis(id=v.AxisId(a), size=size, scale=scale, unit=unit))
        else:
            size = v.SizeReference(tensor_id=v.TensorId("input"), axis_id=v.AxisId(a))
            if halo:
                out.append(v.SpaceOutputAxisWithHalo(id=v.AxisId(a), size=size, halo=halo, scale=scale, unit=unit))
            else:
                out.append(v.SpaceOutputAxis(id=v.AxisId(a), size=size, scale=scale, unit=unit))
    return out


def input_tensor(v, network, test_file: Path, sample_file: Path, scale: float, unit: str | None, halo: int):
    kwargs = v.ScaleRangeKwargs(axes=[v.AxisId("y"), v.AxisId("x")], min_percentile=network.low_percentile,
                                max_percentile=network.high_percentile)
    return v.InputTensorDescr(
        id=v.TensorId("input"),
        description="raw 2D image at the model's pixel size; percentile-normalised per image",
        axes=[v.BatchAxis(), *space_axes(v, "input", scale, unit, network.divisor, halo),
              v.ChannelAxis(channel_names=[v.Identifier("raw")])],
        test_tensor=v.FileDescr(source=test_file),
        sample_tensor=v.FileDescr(source=sample_file),
        data=v.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=[v.ScaleRangeDescr(kwargs=kwargs)],
    )


def output_tensor(v, network, test_file: Path, sample_file: Path, scale: float, unit: str | None, halo: int):
    names = [v.Identifier(n) for n in network.channel_names]
    axes = [v.BatchAxis(), *space_axes(v, "output", scale, unit, network.divisor, halo), v.ChannelAxis(channel_names=names)]
    if network.task == "semantic":
        return v.OutputTensorDescr(
            id=v.TensorId("output"), description="softmax probabilities: " + ", ".join(network.channel_names),
            axes=axes, test_tensor=v.FileDescr(source=test_file), sample_tensor=v.FileDescr(source=sample_file),
            data=v.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)))
    s = network.stardist
    post = v.StardistPostprocessingDescr(kwargs=v.StardistPostprocessingKwargs2D(
        grid=s["grid"], n_rays=s["n_rays"], prob_threshold=s["prob_threshold"], nms_threshold=s["nms_threshold"], b=s["b"]))
    return v.OutputTensorDescr(
        id=v.TensorId("output"), description="instance labels (StarDist post-processing of probability and distances)",
        axes=axes, test_tensor=v.FileDescr(source=test_file), sample_tensor=v.FileDescr(source=sample_file),
        data=v.IntervalOrRatioDataDescr(type="int32"), postprocessing=[post])


def weights(v, files: dict[str, Path]):
    import keras
    import tensorflow as tf

    from rescale4dl_bmz.bioimageio.export.weights import ONNX_OPSET

    tfv = v.Version(tf.__version__)
    onnx = None
    if "onnx" in files:
        import tf2onnx

        onnx = v.OnnxWeightsDescr(source=files["onnx"], opset_version=ONNX_OPSET, parent="keras_v3",
                                  comment=f"converted by tf2onnx {tf2onnx.__version__} from the serving function; "
                                          "for deepImageJ/JDLL's ONNX engines (opsets 6-18)")
    return v.WeightsDescr(
        onnx=onnx,
        keras_v3=v.KerasV3WeightsDescr(source=files["keras_v3"], keras_version=v.Version(keras.__version__),
                                       backend=("tensorflow", tfv)),
        keras_hdf5=v.KerasHdf5WeightsDescr(source=files["keras_hdf5"], tensorflow_version=tfv, parent="keras_v3"),
        tensorflow_saved_model_bundle=v.TensorflowSavedModelBundleWeightsDescr(
            source=files["tensorflow_saved_model_bundle"], tensorflow_version=tfv, parent="keras_v3",
            comment="SavedModel written by keras.export.ExportArchive with a serving_default signature (deepImageJ)"),
    )


def deepimagej_config(pixel_size_um: float | None, scale: float, test_in_shape, test_out_shape,
                      macro: str | None = None) -> dict:
    """`config.deepimagej`: tiling allowed, not pyramidal, test information with the pixel size
    ("1 pixel" when unknown: no physical claim), and the post-processing macro when there is one."""
    px = f"{pixel_size_um:.6g} µm" if pixel_size_um is not None else "1 pixel"
    size = lambda shape: " x ".join(str(int(n)) for n in shape[1:])  # noqa: E731  (y x c)
    post = [{"spec": "ij.IJ::runMacroFile", "kwargs": macro}] if macro else [{"spec": None}]
    return {
        "pyramidal_model": False,
        "allow_tiling": True,
        "model_keys": {"model_tag": "tf.saved_model.tag_constants.SERVING",
                       "signature_definition": "tf.saved_model.signature_constants.DEFAULT_SERVING_SIGNATURE_DEF_KEY"},
        "test_information": {
            "inputs": [{"name": "test_input.npy", "size": size(test_in_shape),
                        "pixel_size": {"x": px, "y": px, "z": "1.0 pixel"}}],
            "outputs": [{"name": "test_output.npy", "type": "image", "size": size(test_out_shape)}],
        },
        "prediction": {"preprocess": [{"spec": None}], "postprocess": post},
    }


def person(v, p, maintainer: bool = False):
    """A spec Author/Maintainer from a `metadata.Person`."""
    fields = {k: getattr(p, k) for k in ("name", "github_user", "orcid", "affiliation") if getattr(p, k)}
    return v.Maintainer(**fields) if maintainer else v.Author(**fields)


def model_description(*, name: str, description: str, meta, task: str, network, files: dict[str, Path],
                      scale: float, unit: str | None, halo: int, config: dict, tags: list[str],
                      covers: list[Path], data: dict | None = None):
    """The ModelDescr; `files` maps roles (test_input, test_output, documentation, weights...) to paths.

    The training data is described in the documentation and `config.rescale4dl.training_data`, not
    in the spec's `training_data`: an inline dataset description without its own authors,
    citation, documentation, tags and source adds five FAIR warnings (spec 0.5.12).
    """
    from bioimageio.spec.model import v0_5 as v

    cite_data = (meta.data_citation or (data or {}).get("name") or "training data", meta.data_doi) \
        if meta.data_doi else None
    attachments = [v.FileDescr(source=files[k]) for k in ("summary", "macro") if k in files]
    extra = {}
    if meta.git_repo:
        extra["git_repo"] = meta.git_repo
    maintainers = meta.maintainer_list
    if maintainers:
        extra["maintainers"] = [person(v, p, maintainer=True) for p in maintainers]
    return v.ModelDescr(
        name=name,
        description=description,
        authors=[person(v, p) for p in meta.author_list],
        cite=[v.CiteEntry(text=text, doi=v.Doi(doi)) for text, doi in citations_for(task, cite_data)],
        license=v.LicenseId(meta.license),
        version=meta.version,
        documentation=v.FileDescr(source=files["documentation"]),
        covers=[v.FileDescr(source=c) for c in covers],
        attachments=attachments,
        tags=tags,
        inputs=[input_tensor(v, network, files["test_input"], files["sample_input"], scale, unit, halo)],
        outputs=[output_tensor(v, network, files["test_output"], files["sample_output"], scale, unit, halo)],
        weights=weights(v, files),
        config=v.Config(**config),
        **extra,
    )
