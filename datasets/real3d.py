"""Real3D-AD adapter (Liu et al., NeurIPS 2023 D&B), as the official M-3LAB loader reads it.

Layout (``real3d-ad-pcd.zip``): ``<root>/<class>/train/*template*.pcd`` (train, all normal),
``<root>/<class>/test/*.pcd`` minus names containing ``temp`` (test),
``<root>/<class>/gt/<stem>.txt``
for anomalous test clouds. Rules of the official loader (re-implemented from its description):
normal test clouds contain ``good`` in their name and get an all-zero mask; for anomalous ones the
points AND the per-point labels come from the whitespace-separated GT txt (``x y z label``), not
from the pcd; every cloud is mean-centred (centre only, no scaling). Units: mm.

The defect name is the file stem without its leading numeric id (``12_bulge`` -> ``bulge``,
``482_bulge_cut`` -> ``bulge_cut``). Listings are sorted (the official glob order is not).
Beyond the official loader: the GT row count is checked against the POINTS of the test cloud's
header (``check_gt_rows=False`` turns this off).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from benchmark.components.geometry.pointops import centre
from benchmark.components.pointcloud_io import pcd_point_count, read_gt_txt, read_point_cloud
from benchmark.dataset import DatasetBase, Record, require_dir
from benchmark.errors import DatasetError
from benchmark.registry import DATASETS
from benchmark.sample import Sample

CATEGORIES = (
    "airplane", "car", "candybar", "chicken", "diamond", "duck",
    "fish", "gemstone", "seahorse", "shell", "starfish", "toffees",
)  # fmt: skip


def defect_from_stem(stem: str, normal_word: str) -> str:
    if normal_word in stem:
        return "good"
    parts = [p for p in re.split(r"[_\-]", stem) if p and not p.isdigit()]
    name = "_".join(parts)
    return re.sub(r"\d+$", "", name) or "bad"


def load_unorganized(
    record: Record,
    dataset: str,
    gt_delimiter: str | None,
    center: bool = True,
    check_gt_rows: bool = True,
) -> Sample:
    """Normal: points from the cloud file, zero mask. Anomalous: points + mask from the GT txt
    (only the cloud's header is read, to check the GT row count). Then mean-centred."""
    if record.label == 1:
        cloud = record.files["cloud"]
        expected = pcd_point_count(cloud) if check_gt_rows and cloud.endswith(".pcd") else None
        points, mask = read_gt_txt(
            record.files["gt"], delimiter=gt_delimiter, expected_rows=expected
        )
    else:
        points = read_point_cloud(record.files["cloud"]).points
        mask = np.zeros(len(points), dtype=np.uint8)
    if center:
        points = centre(points)
    return Sample(
        id=record.id,
        dataset=dataset,
        category=record.category,
        split=record.split,
        defect=record.defect,
        points=points,
        label=record.label,
        point_mask=mask,
        source=dict(record.files),
    )


class Real3DAD(DatasetBase):
    """Real3D-AD as distributed (see the module docstring)."""

    name = "real3d"
    organized = False
    unit = "mm"
    splits = ("train", "test")
    gt_folder = "gt"
    gt_delimiter: str | None = None
    normal_word = "good"

    def __init__(
        self, root: str | os.PathLike, center: bool = True, check_gt_rows: bool = True
    ) -> None:
        super().__init__(root)
        self.center = center
        self.check_gt_rows = check_gt_rows

    def _scan_categories(self) -> list[str]:
        return [
            p.name
            for p in sorted(self.root.iterdir())
            if p.is_dir() and ((p / "train").is_dir() or (p / "test").is_dir())
        ]

    def class_dir(self, category: str) -> Path:
        return self.root / category

    def _records(self, category: str, split: str) -> list[Record]:
        base = self.class_dir(category)
        folder = require_dir(base / split, f"{split} split of category {category!r}")
        if split == "train":
            files = sorted(folder.glob("*template*.pcd"))
            if not files:
                raise DatasetError(f"{folder}: no '*template*.pcd' training clouds")
            return [
                Record(
                    f"{category}/train/{p.stem}", category, "train", "good", 0, {"cloud": str(p)}
                )
                for p in files
            ]
        records = []
        for p in sorted(folder.glob("*.pcd")):
            if "temp" in p.name:  # the official loader skips these
                continue
            defect = defect_from_stem(p.stem, self.normal_word)
            files = {"cloud": str(p)}
            label = int(defect != "good")
            if label:
                gt = base / self.gt_folder / f"{p.stem}.txt"
                if not gt.is_file():
                    raise DatasetError(f"{p}: anomalous test cloud without its GT file {gt}")
                files["gt"] = str(gt)
            records.append(
                Record(f"{category}/test/{p.stem}", category, "test", defect, label, files)
            )
        if not records:
            raise DatasetError(f"{folder}: no test clouds (*.pcd)")
        return records

    def _load(self, record: Record) -> Sample:
        return load_unorganized(
            record, self.name, self.gt_delimiter, self.center, self.check_gt_rows
        )


DATASETS.register(
    "real3d",
    factory=Real3DAD,
    summary="Real3D-AD (pcd templates/tests, whitespace GT txt; mean-centred as official)",
    modalities=("points",),
    provenance="layout and loading rules of M-3LAB/Real3D-AD dataset_pc.py (re-implemented)",
)
