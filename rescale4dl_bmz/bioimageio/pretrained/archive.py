"""Reading a bioimage.io model package offline: its description and the hashes of its files.

A package is a ``.zip``, an ``rdf.yaml`` / ``bioimageio.yaml`` file, or the folder holding one.
`read_source` finds and parses the description and hashes (SHA-256) every package file it names;
`load_description` validates it with bioimageio.spec as a spec 0.5 model.

Validation runs with ``perform_io_checks=False`` and ``known_files`` holding the SHA-256 of
every package file the description names and every URL it mentions (without hash). The spec
therefore checks the presence and hash of each local file, and never opens a URL or looks up
a GitHub user. Spec 0.4 packages are updated to 0.5 by bioimageio.spec; if that fails the
error says so. Anything a user can fix raises `InputError` naming the package; nothing is written.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from rescale4dl_bmz.errors import InputError

RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")


@dataclass
class PackageSource:
    """A package as found on disk, before validation."""

    path: Path          # what the user gave
    load: Path          # what bioimageio.spec loads (zip or yaml file)
    rdf: dict
    known: dict         # known_files for bioimageio.spec


def _strings(value):
    """Every string inside a parsed YAML value."""
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


def read_source(path: str | Path) -> PackageSource:
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
        return PackageSource(p, rdf_path, rdf, known)
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
    return PackageSource(p, p, rdf, known)


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


def load_description(src: PackageSource):
    """The spec 0.5 ModelDescr (0.4 updated); InputError when it does not validate."""
    from bioimageio.spec import ValidationContext
    from bioimageio.spec import load_description as spec_load_description
    from bioimageio.spec.model import v0_4, v0_5

    declared = str(src.rdf.get("format_version", "?"))

    def load(fmt):
        with ValidationContext(log_warnings=False):
            return spec_load_description(src.load, format_version=fmt, perform_io_checks=False,
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
