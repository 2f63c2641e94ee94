"""`rescale4dl predict MODEL IMAGES --out PRED`: segment every image of a folder with a trained model."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rescale4dl_bmz.errors import InputError

log = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "predict", help="segment a folder of images with a trained model",
        description="Write one TIFF per image into PRED, with the same file name: 0/1/2 uint8 maps for a "
                    "semantic model, instance labels for an instance model. Images of any size are tiled.")
    p.add_argument("model", type=Path, help="model folder written by `rescale4dl train`")
    p.add_argument("images", type=Path, help="folder of 2D images (.tif/.tiff/.png)")
    p.add_argument("--out", required=True, type=Path, metavar="PRED", help="output folder")
    p.add_argument("--channel", type=int, help="channel of multichannel images")
    p.add_argument("--tile-size", type=int, metavar="PX", help="largest tile side (U-Net 512, StarDist 1024)")
    return p


def output_name(path: Path) -> str:
    """The prediction's file name: the image's own name for TIFFs, NAME.tif otherwise."""
    return path.name if path.suffix.lower() in (".tif", ".tiff") else f"{path.stem}.tif"


def check_output_names(files: list[Path]) -> None:
    """Two images whose predictions would share a file name (x.tif and x.png) are refused."""
    seen: dict[str, Path] = {}
    for path in files:
        name = output_name(path)
        key = Path(name).stem.lower() if name.lower().endswith((".tif", ".tiff")) else name.lower()
        if key in seen:
            raise InputError(f"{path}: its prediction would overwrite that of {seen[key]} (same name); "
                             "rename one of them")
        seen[key] = path


def run(args: argparse.Namespace) -> int:
    from rescale4dl_bmz.files.folders import ensure_outside, list_images
    from rescale4dl_bmz.files.images import read_image, read_pixel_size, write_tiff

    if args.tile_size is not None and args.tile_size < 16:
        raise InputError(f"--tile-size {args.tile_size} is too small (at least 16 px)")
    ensure_outside(args.out, args.images, args.model)
    files = list_images(args.images, "image folder")
    check_output_names(files)
    for path in files:  # every input is checked before the first prediction is written
        read_image(path, args.channel)
        read_pixel_size(path)
    from rescale4dl_bmz.models.store import load_model

    model = load_model(args.model)
    trained_at = model.config.pixel_size_um
    for path in files:
        image = read_image(path, args.channel)
        pixel = read_pixel_size(path)
        if trained_at and pixel and abs(pixel / trained_at - 1) > 0.05:
            log.warning("%s: pixel size %.4g µm, but the model was trained at %.4g µm", path.name, pixel, trained_at)
        labels = model.predict(image, tile_size=args.tile_size)
        write_tiff(args.out / output_name(path), labels, pixel)
        log.info("%s -> %s", path.name, args.out / output_name(path))
    print(f"{len(files)} prediction(s) written to {args.out}")
    return 0
