"""Who made a package and on what data: authors, maintainers, version, repository, training data.

`PackageMetadata` is one validated record (a `SweepConfig` key, `package:`, and the export
command's flags). A person is a mapping (name, github_user, orcid, affiliation) or, on the
command line, `"NAME[:GITHUB[:ORCID]]"`. The Model Zoo wants maintainers with GitHub handles:
when none are given, the authors with a handle are the maintainers (the spec's rule).
Pure (pydantic only): nothing here touches bioimageio.spec, TensorFlow or the disk.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rescale4dl_bmz.errors import InputError, describe_validation_error

DEFAULT_AUTHOR = "rescale4dl_bmz user"
DEFAULT_VERSION = "0.1.0"
GITHUB_USER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
ORCID = re.compile(r"^\d{4}-\d{4}-\d{4}-\d{3}[\dX]$")
VERSION = re.compile(r"^\d+(\.\d+){0,2}([.-]?[A-Za-z0-9]+)*$")


def orcid_checksum_ok(orcid: str) -> bool:
    """ISO 7064 11,2 check digit of an ORCID iD (the last character)."""
    digits = orcid.replace("-", "")
    total = 0
    for ch in digits[:-1]:
        total = (total + int(ch)) * 2
    check = (12 - total % 11) % 11
    return digits[-1] == ("X" if check == 10 else str(check))


class Person(BaseModel):
    """An author or maintainer. `github_user` is the GitHub handle (no @), `orcid` like 0000-0002-1825-0097."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    github_user: str | None = None
    orcid: str | None = None
    affiliation: str | None = None

    @field_validator("name", "affiliation")
    @classmethod
    def _text(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip()
        if not v or "/" in v or "\\" in v:
            raise ValueError(f"{v!r} must be non-empty and contain no '/' or '\\'")
        return v

    @field_validator("github_user")
    @classmethod
    def _github(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        v = v.strip().lstrip("@")
        if not GITHUB_USER.match(v):
            raise ValueError(f"{v!r} is not a GitHub user name (letters, digits and single hyphens, at most 39)")
        return v

    @field_validator("orcid")
    @classmethod
    def _orcid(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        v = v.strip().removeprefix("https://orcid.org/")
        if not ORCID.match(v) or not orcid_checksum_ok(v):
            raise ValueError(f"{v!r} is not a valid ORCID iD (0000-0000-0000-000X with its check digit)")
        return v

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data):
        if isinstance(data, str):
            return parse_person(data)
        return data

    @model_validator(mode="after")
    def _named(self):
        if self.name is None and self.github_user is None:
            raise ValueError("a person needs a name or a github_user")
        return self

    @property
    def display_name(self) -> str:
        return self.name or self.github_user or ""


def parse_person(text: str) -> dict:
    """`"NAME[:GITHUB[:ORCID]]"` -> fields (empty parts are left out)."""
    parts = [p.strip() for p in str(text).split(":")]
    if len(parts) > 3:
        raise ValueError(f"{text!r}: expected NAME[:GITHUB[:ORCID]]")
    keys = ("name", "github_user", "orcid")
    return {k: p for k, p in zip(keys, parts) if p}


class PackageMetadata(BaseModel):
    """Metadata of an exported package that the run folder cannot know."""

    model_config = ConfigDict(extra="forbid")

    authors: list[Person] = Field(default_factory=list, description="default: one placeholder author")
    maintainers: list[Person] = Field(default_factory=list, description="need github_user; default: authors with one")
    version: str = Field(DEFAULT_VERSION, description="the model's version (e.g. 0.1.0)")
    license: str = Field("MIT", description="SPDX identifier of the model's licence")
    git_repo: str | None = Field(None, description="https URL of the code or training repository")
    data_name: str | None = Field(None, description="public name of the training data (default: its folder name)")
    data_license: str | None = Field(None, description="SPDX identifier of the training data's licence")
    data_citation: str | None = Field(None, description="reference text of the training data")
    data_doi: str | None = Field(None, description="DOI of the training data (10.xxxx/...)")

    @field_validator("maintainers")
    @classmethod
    def _handles(cls, v: list[Person]) -> list[Person]:
        missing = [p.display_name for p in v if p.github_user is None]
        if missing:
            raise ValueError(f"maintainers need a GitHub user name: {', '.join(missing)}")
        return v

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        v = str(v).strip()
        if not VERSION.match(v):
            raise ValueError(f"{v!r} is not a version like 0.1.0")
        return v

    @field_validator("git_repo")
    @classmethod
    def _repo(cls, v: str | None) -> str | None:
        if v is None:
            return None
        if not re.match(r"^https://[^\s/]+\.[^\s/]+/\S+$", v.strip()):
            raise ValueError(f"{v!r} is not an https URL of a repository")
        return v.strip()

    @field_validator("data_doi")
    @classmethod
    def _doi(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip().removeprefix("https://doi.org/").removeprefix("doi:")
        if not re.match(r"^10\.\d{4,9}/\S+$", v):
            raise ValueError(f"{v!r} is not a DOI (10.xxxx/...)")
        return v

    @property
    def author_list(self) -> list[Person]:
        return list(self.authors) or [Person(name=DEFAULT_AUTHOR)]

    @property
    def maintainer_list(self) -> list[Person]:
        """The maintainers, else the authors who have a GitHub handle (the spec's default)."""
        return list(self.maintainers) or [p for p in self.authors if p.github_user]

    @property
    def github_users(self) -> list[str]:
        return sorted({p.github_user for p in (*self.authors, *self.maintainers) if p.github_user})


def make_metadata(source: str = "export options", **fields) -> PackageMetadata:
    """Validate fields (None = default) into `PackageMetadata`; problems become one `InputError`."""
    try:
        return PackageMetadata(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise InputError(f"{source}: invalid package metadata: {describe_validation_error(exc)}") from None
