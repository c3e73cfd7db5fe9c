"""Anomaly-ShapeNet adapter (Li et al., CVPR 2024, IMRNet; v2 release), as its loaders read it.

Layout (README + the PO3AD loader): ``<root>/dataset/pcd/<class>/train/<class>_template<k>.pcd``,
``.../test/<class>_<type><k>.pcd`` (``positive`` = normal), ``.../GT/<class>_<type><k>.txt`` with
comma-separated rows ``x,y,z,label`` for anomalous clouds. The classes added later ship in a
separate folder; every folder directly under ``<root>/dataset`` (or ``<root>``) whose name
contains ``pcd`` is searched, so both the 40-class layout and the extra-classes folder are found.
`root` may also point at such a ``pcd`` folder directly.

Loading follows the Real3D-AD rules (shared code): anomalous points and labels come from the GT
txt; normal test and train clouds from the pcd with all-zero masks; test names containing
``temp`` are skipped; clouds are mean-centred (guessed: the Real3D-AD baselines run on this dataset
with that loader; pass ``center=False`` for raw coordinates). A ``gt`` folder is accepted in place
of ``GT``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from benchmark.dataset import Record
from benchmark.errors import DatasetError
from benchmark.registry import DATASETS
from datasets.real3d import Real3DAD

CATEGORIES = (
    "ashtray0", "bag0", "bottle0", "bottle1", "bottle3", "bowl0", "bowl1", "bowl2", "bowl3",
    "bowl4", "bowl5", "bucket0", "bucket1", "cap0", "cap3", "cap4", "cap5", "cup0", "cup1",
    "eraser0", "headset0", "headset1", "helmet0", "helmet1", "helmet2", "helmet3", "jar0",
    "microphone0", "shelf0", "tap0", "tap1", "vase0", "vase1", "vase2", "vase3", "vase4", "vase5",
    "vase7", "vase8", "vase9",
)  # fmt: skip


def _is_class_dir(p: Path) -> bool:
    return p.is_dir() and ((p / "train").is_dir() or (p / "test").is_dir())


class AnomalyShapeNet(Real3DAD):
    """Anomaly-ShapeNet v2 as distributed (see the module docstring)."""

    name = "anomaly_shapenet"
    unit = None  # normalised ShapeNet shapes: no physical unit
    gt_delimiter = ","
    normal_word = "positive"

    def __init__(
        self, root: str | os.PathLike, center: bool = True, check_gt_rows: bool = True
    ) -> None:
        super().__init__(root, center=center, check_gt_rows=check_gt_rows)
        self._class_dirs: dict[str, Path] | None = None

    def _containers(self) -> list[Path]:
        bases = [self.root, self.root / "dataset"]
        found = []
        for base in bases:
            if not base.is_dir():
                continue
            if any(_is_class_dir(p) for p in base.iterdir()):
                found.append(base)
            for sub in sorted(base.iterdir()):
                if sub.is_dir() and "pcd" in sub.name.lower() and sub not in found:
                    found.append(sub)
        return found

    def _scan_categories(self) -> list[str]:
        dirs: dict[str, Path] = {}
        for container in self._containers():
            for p in sorted(container.iterdir()):
                if _is_class_dir(p):
                    if p.name in dirs:
                        raise DatasetError(f"{p}: class {p.name!r} also found at {dirs[p.name]}")
                    dirs[p.name] = p
        self._class_dirs = dirs
        return list(dirs)

    def class_dir(self, category: str) -> Path:
        if self._class_dirs is None:
            self._scan_categories()
        return self._class_dirs[category]

    def _records(self, category: str, split: str) -> list[Record]:
        base = self.class_dir(category)
        if split == "test" and not (base / "GT").is_dir() and (base / "gt").is_dir():
            self.gt_folder = "gt"
        else:
            self.gt_folder = "GT"
        records = super()._records(category, split)
        out = []
        for r in records:
            stem = Path(r.files["cloud"]).stem
            defect = "good" if r.label == 0 else _defect(stem, category)
            out.append(Record(**{**r.__dict__, "defect": defect}))
        return out


def _defect(stem: str, category: str) -> str:
    name = stem[len(category) + 1 :] if stem.startswith(category + "_") else stem
    return re.sub(r"\d+$", "", name) or "bad"


DATASETS.register(
    "anomaly_shapenet",
    factory=AnomalyShapeNet,
    summary="Anomaly-ShapeNet v2 (pcd templates/tests, comma GT txt; 40 classes + extra folder)",
    modalities=("points",),
    provenance="layout of Chopper-233/Anomaly-ShapeNet v2 and the PO3AD loader (re-implemented)",
)
