"""Reading an MVTec 3D-AD-like organized tree (shared by `mvtec3d` and the converted `eyecandies`).

Layout: ``<root>/<category>/<split>/<defect>/{xyz/<id>.tiff, rgb/<id>.png, gt/<id>.png}`` with
split in train / validation / test; test folders other than ``good`` are anomalous. Files of one
sample are matched by their id (file stem); an id present in one modality but not in another is an
error. Invalid pixels of the xyz grid are (0,0,0); they stay in `xyz_grid` and are left out of
`points`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.components.pointcloud_io import read_mask_png, read_rgb_png, read_xyz_tiff
from benchmark.dataset import Record, require_dir
from benchmark.errors import DatasetError
from benchmark.sample import Sample

SPLIT_FOLDERS = {"train": "train", "validation": "validation", "test": "test"}


def _stems(folder: Path, suffix: str) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob(f"*{suffix}")) if not p.name.startswith(".")}


def scan_categories(root: Path) -> list[str]:
    return [
        p.name
        for p in sorted(root.iterdir())
        if p.is_dir()
        and not p.name.startswith(".")
        and ((p / "train").is_dir() or (p / "test").is_dir())
    ]


def scan_split(
    root: Path, category: str, split: str, use_rgb: bool = True, required: bool = True
) -> list[Record]:
    """Scans one split folder; returns records sorted by defect then id."""
    split_dir = root / category / SPLIT_FOLDERS[split]
    if not split_dir.is_dir():
        if required:
            require_dir(split_dir, f"{split} split of category {category!r}")
        return []
    records: list[Record] = []
    for defect_dir in sorted(
        p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    ):
        defect = defect_dir.name
        anomalous = split == "test" and defect != "good"
        xyz = _stems(require_dir(defect_dir / "xyz", "xyz folder"), ".tiff")
        mods = {"xyz": xyz}
        if use_rgb:
            mods["rgb"] = _stems(require_dir(defect_dir / "rgb", "rgb folder"), ".png")
        if anomalous:
            mods["gt"] = _stems(require_dir(defect_dir / "gt", "gt folder"), ".png")
        all_ids = sorted(set().union(*(set(m) for m in mods.values())))
        for sid in all_ids:
            missing = [name for name, m in mods.items() if sid not in m]
            if missing:
                have = next(m[sid] for m in mods.values() if sid in m)
                raise DatasetError(
                    f"{have}: sample id {sid!r} has no matching file in "
                    f"{', '.join(str(defect_dir / name) for name in missing)}"
                )
            records.append(
                Record(
                    id=f"{category}/{split}/{defect}/{sid}",
                    category=category,
                    split=split,
                    defect=defect,
                    label=int(anomalous),
                    files={name: str(m[sid]) for name, m in mods.items()},
                )
            )
    return records


def load_organized(record: Record, dataset: str) -> Sample:
    """Reads xyz (+ rgb, + gt) of one record into a Sample."""
    xyz_path = record.files["xyz"]
    grid = read_xyz_tiff(xyz_path)
    h, w = grid.shape[:2]
    rgb = None
    if "rgb" in record.files:
        rgb = read_rgb_png(record.files["rgb"])
        if rgb.shape[:2] != (h, w):
            raise DatasetError(
                f"{record.files['rgb']}: RGB image is {rgb.shape[1]}x{rgb.shape[0]} but the xyz "
                f"grid {xyz_path} is {w}x{h}"
            )
    if "gt" in record.files:
        mask = read_mask_png(record.files["gt"])
        if mask.shape != (h, w):
            raise DatasetError(
                f"{record.files['gt']}: GT mask is {mask.shape[1]}x{mask.shape[0]} but the xyz "
                f"grid {xyz_path} is {w}x{h}"
            )
    else:
        mask = np.zeros((h, w), dtype=np.uint8)
    valid = np.any(grid != 0, axis=2).ravel()
    grid_index = np.flatnonzero(valid).astype(np.int64)
    if len(grid_index) == 0:
        raise DatasetError(f"{xyz_path}: no valid point (every pixel is (0,0,0))")
    points = grid.reshape(-1, 3)[grid_index]
    return Sample(
        id=record.id,
        dataset=dataset,
        category=record.category,
        split=record.split,
        defect=record.defect,
        points=np.ascontiguousarray(points, dtype=np.float32),
        label=record.label,
        point_mask=mask.ravel()[grid_index].copy(),
        xyz_grid=grid,
        grid_index=grid_index,
        rgb=rgb,
        pixel_mask=mask,
        source=dict(record.files),
    )
