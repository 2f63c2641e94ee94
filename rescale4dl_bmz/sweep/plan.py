"""The plan of one sweep and where its files live: what `prepare` decided (small and
JSON-serialisable: it keys the Prefect cache), each factor's folder, and the crop every factor covers.

RUN_DIR layout: `record.json` (the run record, written first), `config.yaml` (resolved), `run.json`,
`advice.csv`, `<factor>/{images,masks,labels}`, `<factor>/model/`, `<factor>/predictions/`,
`<factor>/{per_image,per_object}.csv`, `<factor>/<stage>.done.json`, `per_image.csv`, `per_object.csv`,
`summary.csv`, `selection.json`, `figures/`, `report.md`, `report.html`, `model.zip`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rescale4dl_bmz.factors import crop_slices
from rescale4dl_bmz.files.dataset import ItemInfo, Pair


@dataclass
class Plan:
    """What `prepare` decided; small and JSON-serialisable (it keys the Prefect cache)."""

    out: str
    task: str
    factors: list[str]
    run_factors: list[str]              # factors not pruned
    pruned: dict[str, str]              # factor -> reason
    pixel_size_um: float | None
    crop_multiple: int
    items: list[dict]                   # name, image, mask, shape (original, uncropped), n_objects
    train: list[str]
    test: list[str]
    image_shape: list[int] = field(default_factory=list)  # cropped shape of the first image
    package: dict | None = None         # the pretrained package's description (PackageInfo.as_dict)
    size_measure: str = "width"         # the object size of every table ("width" or "equivalent_diameter")

    def pair(self, name: str) -> Pair:
        """The original image and mask files of one item."""
        item = next(i for i in self.items if i["name"] == name)
        return Pair(name, Path(item["image"]), Path(item["mask"]))

    def infos(self) -> list:
        """The validated items as `dataset.ItemInfo` records (pixel size = the dataset's)."""
        return [ItemInfo(i["name"], Path(i["image"]), Path(i["mask"]), tuple(i["shape"]), self.pixel_size_um,
                         i["n_objects"]) for i in self.items]


def factor_dir(plan: Plan, factor: str) -> Path:
    """The folder of one factor's images, masks, model, predictions, tables and done-markers."""
    return Path(plan.out) / factor


def crop_pair(image: np.ndarray, mask: np.ndarray, plan: Plan, anchor: str) -> tuple[np.ndarray, np.ndarray]:
    """The pair cropped once to the ladder's multiple (what every factor covers)."""
    rows, cols = crop_slices(image.shape, plan.crop_multiple, anchor)
    return image[rows, cols], mask[rows, cols]

