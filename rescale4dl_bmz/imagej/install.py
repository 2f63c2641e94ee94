"""What an ImageJ session needs installed, found or named: Java, ij.jar or a Fiji, Xvfb, our macros.

A missing piece raises `ImageJUnavailable` saying which Debian package (or setting) provides it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rescale4dl_bmz.errors import InputError

MACRO_DIR = Path(__file__).resolve().parents[2] / "fiji_macros"
DEFAULT_IJ_JAR = Path("/usr/share/java/ij.jar")


class ImageJUnavailable(RuntimeError):
    """Java, ImageJ or Xvfb is missing; the message says which package to install."""


def macro_path(name: str | Path) -> Path:
    """A macro file: the path as given, else one of fiji_macros/ by file name (`instance_to_semantic.ijm`)."""
    path = Path(name)
    if path.is_file():
        return path
    ours = MACRO_DIR / path.name
    if path.parent == Path(".") and ours.is_file():
        return ours
    raise InputError(f"ImageJ macro {path} not found")


def find_ij_jar(ij_jar: str | Path | None = None) -> Path:
    """ij.jar: the argument, env RESCALE4DL_IJ_JAR, else /usr/share/java/ij.jar."""
    given = ij_jar or os.environ.get("RESCALE4DL_IJ_JAR")
    if given:
        path = Path(given)
        if not path.is_file():
            raise InputError(f"ImageJ jar {path} (RESCALE4DL_IJ_JAR) does not exist")
        return path
    if DEFAULT_IJ_JAR.is_file():
        return DEFAULT_IJ_JAR
    raise ImageJUnavailable(f"ImageJ 1.x not found at {DEFAULT_IJ_JAR}: install the Debian package 'imagej' "
                            "(or 'libij-java'), set RESCALE4DL_IJ_JAR to an ij.jar, or point --fiji at a Fiji")


def find_fiji(fiji: str | Path | None = None) -> Path | None:
    """The Fiji folder from the argument or env RESCALE4DL_FIJI; None for the ij.jar route."""
    given = fiji or os.environ.get("RESCALE4DL_FIJI")
    if not given:
        return None
    path = Path(given)
    if not path.is_dir():
        raise InputError(f"Fiji folder {path} does not exist")
    if not (path / "jars").is_dir():
        raise InputError(f"{path} is not a Fiji installation (it has no jars/ folder)")
    return path


def check_tools(fiji: Path | None) -> None:
    """Java, and for plain ImageJ 1.x also Xvfb and xauth, are on this machine."""
    java_home = os.environ.get("JAVA_HOME")
    if not (shutil.which("java") or (java_home and Path(java_home, "bin", "java").exists())):
        raise ImageJUnavailable("no Java runtime found: install the Debian package 'default-jre-headless' "
                                "(or 'openjdk-17-jre-headless'), or set JAVA_HOME")
    if fiji is None:
        for tool, package in (("Xvfb", "xvfb"), ("xauth", "xauth")):
            if not shutil.which(tool):
                raise ImageJUnavailable(f"{tool} not found: install the Debian package '{package}' "
                                        "(plain ImageJ 1.x needs a virtual display)")
