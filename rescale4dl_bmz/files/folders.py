"""Folders of images: which files count as images, and files of two folders paired by name (stem).

Every command that matches files across folders (images with masks, ground truth with
predictions) or names its outputs after its inputs goes through `images_by_stem`, so two files
sharing a stem (`a.tif`, `a.png`) are refused the same way everywhere.
"""

from __future__ import annotations

from pathlib import Path

from rescale4dl_bmz.errors import InputError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def has_images(folder: str | Path) -> bool:
    """Whether a folder holds at least one image file itself (not in sub-folders)."""
    return any(_is_image(p) for p in Path(folder).iterdir())


def list_images(folder: str | Path, what: str = "folder") -> list[Path]:
    """Sorted image files (.tif/.tiff/.png) of a folder; error when missing or empty."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{what} {folder} does not exist")
    if not folder.is_dir():
        raise InputError(f"{what} {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if _is_image(p))
    if not files:
        raise InputError(f"{what} {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def images_by_stem(folder: str | Path, what: str = "folder") -> dict[str, Path]:
    """stem -> file for the images of a folder; two files sharing a stem are an error."""
    out: dict[str, Path] = {}
    for f in list_images(folder, what):
        if f.stem in out:
            raise InputError(f"{folder}: two files share the name {f.stem!r} ({out[f.stem].name}, {f.name})")
        out[f.stem] = f
    return out


def pair_by_stem(first_dir: str | Path, second_dir: str | Path, first: str, second: str,
                 ) -> list[tuple[str, Path, Path]]:
    """(stem, file of `first_dir`, file of `second_dir`) for every image, sorted by stem.

    `first` / `second` say what each folder holds ("image", "mask", "ground-truth", ...), for
    the messages. Every file must have its partner.
    """
    a = images_by_stem(first_dir, f"{first} folder")
    b = images_by_stem(second_dir, f"{second} folder")
    for stem, path in a.items():
        if stem not in b:
            raise InputError(f"{path}: no {second} with the same name in {second_dir}")
    for stem, path in b.items():
        if stem not in a:
            raise InputError(f"{path}: no {first} with the same name in {first_dir}")
    return [(stem, a[stem], b[stem]) for stem in sorted(a)]


def ensure_outside(out: str | Path, *inputs: str | Path) -> None:
    """Refuse an output folder inside (or equal to) an input folder, and an input inside the output
    folder (it would be written to, or taken for output): inputs are never written to."""
    o = Path(out).resolve()
    for given in inputs:
        i = Path(given).resolve()
        if o == i or i in o.parents:
            raise InputError(f"output folder {out} lies inside the input folder {i}; choose another --out")
        if o in i.parents:
            raise InputError(f"input {given} lies inside the output folder {out}; move it or choose another --out")
    check_output_folder(out)


def check_output_folder(out: str | Path, what: str = "--out") -> Path:
    """An output folder path that can be a folder: not an existing file, no file among its parents."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{what} {out} exists and is not a folder")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{what} {out}: {parent} is a file, not a folder")
            break
    return out


def check_output_file(path: str | Path, what: str) -> Path:
    """An output file path: not an existing folder, and its folder can be a folder."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder; give a file name")
    check_output_folder(path.parent, what)
    return path
