"""Eyecandies adapter (Bonfiglioli et al., ACCV 2022), reading the raw release layout.

Raw layout: ``<root>/<Category>/{train,val,test_public}/data/<id>_<item>`` with items
``image_0..5.png``, ``depth.png`` (16-bit, normalised), ``info_depth.yaml``, ``pose.txt``,
``mask.png`` (+ per-kind masks and ``metadata.yaml``). ``test_private`` has no GT and is not used.

Conversion (re-implemented from the description of M3DM's ``utils/preprocess_eyecandies.py``):
depth_m = png / 65535 * (max - min) + min; pinhole back-projection with focal 711.11 and principal
point (W/2, H/2); world point = inverse(K @ pose) applied to (u*d, v*d, d, 1), i.e. the pose file is
used the way M3DM uses it. Background rule: the rotation about x that aligns the segment between the
middle pixel of the first row and the middle pixel of the last row with +z (M3DM hard-codes the
flattened indices 256 / -256 of a 512x512 image, which are exactly these pixels); points whose
rotated coordinates have y > -0.02, z > 1.8 or |x| > 1 are background. Kept points are reordered to
[x, z, y] and scaled by [0.1, -0.1, 0.1]. Background pixels become exactly (0,0,0) (M3DM leaves a
~1e-4 residual with x exactly 0, which its loader then discards as a zero point).

Differences from M3DM, on purpose: RGB comes from ``image_0`` (all spotlights) by default and is
choosable (``rgb="image_4"`` reproduces M3DM); ids keep their original names; the validation
split (``val``) is converted too; the test defect name comes from ``metadata.yaml``
(bumps / dents / colors / normals, "combined" when several, "bad" without metadata), while the
label comes from the mask (any non-zero pixel = anomalous), as in M3DM.

The converted tree is MVTec 3D-AD-like and lives in the cache, keyed by its recipe (root, file
fingerprint, options); it is built once per category on first use.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from benchmark.cache import cached_dir
from benchmark.components.pointcloud_io import (
    read_depth_png,
    read_mask_png,
    write_png,
    write_xyz_tiff,
)
from benchmark.dataset import DatasetBase, Record, fingerprint_tree, require_dir
from benchmark.errors import DatasetError
from benchmark.registry import DATASETS
from benchmark.sample import Sample
from datasets._organized import load_organized, scan_split

FOCAL_LENGTH = 711.11
RAW_SPLITS = {"train": "train", "validation": "val", "test": "test_public"}
CATEGORIES = (
    "CandyCane", "ChocolateCookie", "ChocolatePraline", "Confetto", "GummyBear",
    "HazelnutTruffle", "LicoriceSandwich", "Lollipop", "Marshmallow", "PeppermintCandy",
)  # fmt: skip
DEFECT_KINDS = ("bumps", "dents", "colors", "normals")
CONVERSION_VERSION = 1


def load_depth_m(depth_png: str | os.PathLike, info_yaml: str | os.PathLike) -> np.ndarray:
    """The 16-bit depth PNG in metres, using ``normalization.min/max`` of info_depth.yaml."""
    import yaml

    raw = read_depth_png(depth_png)
    try:
        info = yaml.safe_load(Path(info_yaml).read_text())
        lo, hi = float(info["normalization"]["min"]), float(info["normalization"]["max"])
    except FileNotFoundError as err:
        raise DatasetError(f"{info_yaml}: depth normalisation file not found") from err
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as err:
        raise DatasetError(
            f"{info_yaml}: expected YAML with normalization: {{min: float, max: float}} ({err})"
        ) from err
    return raw.astype(np.float32) / 65535.0 * (hi - lo) + lo


def load_pose(path: str | os.PathLike) -> np.ndarray:
    try:
        pose = np.loadtxt(path, dtype=np.float64)
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path}: cannot read a 4x4 pose matrix ({err})") from err
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
        raise DatasetError(f"{path}: expected a finite 4x4 pose matrix, got shape {pose.shape}")
    return pose


def depth_to_points(
    depth_m: np.ndarray, pose: np.ndarray, focal: float = FOCAL_LENGTH
) -> np.ndarray:
    """Back-projects a (H,W) depth map to world points (H*W,3) float64, row-major."""
    h, w = depth_m.shape
    v, u = np.mgrid[0:h, 0:w]
    d = depth_m.astype(np.float64).ravel()
    cam = np.stack(
        [(u.ravel() - w / 2) * d / focal, (v.ravel() - h / 2) * d / focal, d, np.ones_like(d)]
    )
    world = np.linalg.inv(pose) @ cam
    return world[:3].T


def remove_background(points: np.ndarray, h: int, w: int) -> np.ndarray:
    """M3DM's background rule and axis change; returns float32 (H*W,3) with (0,0,0) background."""
    top, bottom = points[w // 2], points[(h - 1) * w + w // 2]
    dz, dy = top[1] - bottom[1], top[2] - bottom[2]  # (the original calls column 1 "z")
    norm = float(np.hypot(dz, dy))
    if norm == 0:
        raise DatasetError("reference pixels of the background rule coincide (degenerate depth)")
    cos_t, sin_t = dy / norm, dz / norm
    rot = np.array([[1, 0, 0], [0, cos_t, -sin_t], [0, sin_t, cos_t]])
    start = np.array([0.0, bottom[1], bottom[2]])
    local = (points - start) @ rot.T
    background = (local[:, 1] > -0.02) | (local[:, 2] > 1.8) | (np.abs(local[:, 0]) > 1)
    out = points[:, [0, 2, 1]] * np.array([0.1, -0.1, 0.1])
    out[background] = 0.0
    return out.astype(np.float32)


def convert_depth(
    depth_png: str | os.PathLike,
    info_yaml: str | os.PathLike,
    pose_txt: str | os.PathLike,
    focal: float = FOCAL_LENGTH,
) -> np.ndarray:
    """One raw sample -> organized float32 (H,W,3) cloud in M3DM's frame, background (0,0,0)."""
    depth = load_depth_m(depth_png, info_yaml)
    h, w = depth.shape
    pts = depth_to_points(depth, load_pose(pose_txt), focal)
    grid = remove_background(pts, h, w).reshape(h, w, 3)
    if not np.isfinite(grid).all():
        raise DatasetError(f"{depth_png}: conversion produced NaN/inf coordinates")
    return grid


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.size  # (W, H)
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: image not found") from err
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetError(f"{path}: unreadable image ({err})") from err


def _defect_name(meta_path: Path) -> str:
    import yaml

    if not meta_path.is_file():
        return "bad"
    try:
        meta = yaml.safe_load(meta_path.read_text()) or {}
    except yaml.YAMLError as err:
        raise DatasetError(f"{meta_path}: malformed metadata YAML ({err})") from err
    kinds = [k for k in DEFECT_KINDS if int(meta.get(f"anomalous_{k}", 0) or 0)]
    if not kinds:
        return "bad"
    return kinds[0] if len(kinds) == 1 else "combined"


class Eyecandies(DatasetBase):
    """Eyecandies from its raw release layout, converted once (see the module docstring)."""

    name = "eyecandies"
    organized = True
    has_rgb = True
    unit = "dam"  # metres x 0.1 after the M3DM conversion: one unit is 10 m
    splits = ("train", "validation", "test")

    def __init__(
        self, root: str | os.PathLike, rgb: str = "image_0", focal: float = FOCAL_LENGTH
    ) -> None:
        super().__init__(root)
        valid = [f"image_{k}" for k in range(6)]
        if rgb not in valid:
            raise DatasetError(f"{self.name}: rgb must be one of {valid}, got {rgb!r}")
        self.rgb_item = rgb
        self.focal = float(focal)
        self._trees: dict[str, Path] = {}

    def _scan_categories(self) -> list[str]:
        return [
            p.name
            for p in sorted(self.root.iterdir())
            if p.is_dir() and any((p / s / "data").is_dir() for s in RAW_SPLITS.values())
        ]

    # ---- raw scan
    def _raw_ids(self, category: str, split: str) -> tuple[Path, list[str]]:
        folder = self.root / category / RAW_SPLITS[split] / "data"
        if split == "validation" and not folder.is_dir():
            return folder, []
        require_dir(folder, f"Eyecandies {RAW_SPLITS[split]} split of {category!r}")
        ids = sorted({p.name[: -len("_depth.png")] for p in folder.glob("*_depth.png")})
        needed = ["info_depth.yaml", "pose.txt", f"{self.rgb_item}.png"]
        if split == "test":
            needed.append("mask.png")
        others = {p.name.split("_", 1)[0] for p in folder.glob(f"*_{self.rgb_item}.png")}
        for sid in sorted(others - set(ids)):
            raise DatasetError(
                f"{folder / f'{sid}_{self.rgb_item}.png'}: sample id {sid!r} has no depth file "
                f"{folder / f'{sid}_depth.png'}"
            )
        for sid in ids:
            for item in needed:
                if not (folder / f"{sid}_{item}").is_file():
                    raise DatasetError(
                        f"{folder / f'{sid}_{item}'}: missing (sample {sid!r} has a depth file)"
                    )
        return folder, ids

    def _convert(self, category: str, tmp: Path) -> None:
        sources: dict[str, dict[str, str]] = {}
        for split in self.splits:
            folder, ids = self._raw_ids(category, split)
            for sid in ids:
                depth = folder / f"{sid}_depth.png"
                grid = convert_depth(
                    depth, folder / f"{sid}_info_depth.yaml", folder / f"{sid}_pose.txt", self.focal
                )
                h, w = grid.shape[:2]
                rgb_path = folder / f"{sid}_{self.rgb_item}.png"
                if _image_size(rgb_path) != (w, h):
                    raise DatasetError(
                        f"{rgb_path}: image size {_image_size(rgb_path)} differs from the depth "
                        f"map {depth} ({w}, {h})"
                    )
                defect, mask = "good", None
                if split == "test":
                    mask_path = folder / f"{sid}_mask.png"
                    mask = read_mask_png(mask_path)
                    if mask.shape != (h, w):
                        raise DatasetError(
                            f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]}, depth map "
                            f"{depth} is {w}x{h}"
                        )
                    if mask.any():
                        defect = _defect_name(folder / f"{sid}_metadata.yaml")
                out = tmp / category / split / defect
                write_xyz_tiff(out / "xyz" / f"{sid}.tiff", grid, atomic=False)
                (out / "rgb").mkdir(parents=True, exist_ok=True)
                shutil.copyfile(rgb_path, out / "rgb" / f"{sid}.png")
                if mask is not None and defect != "good":
                    write_png(out / "gt" / f"{sid}.png", mask * 255, atomic=False)
                sources[f"{category}/{split}/{defect}/{sid}"] = {
                    "raw_depth": str(depth),
                    "raw_rgb": str(rgb_path),
                    **({"raw_mask": str(folder / f"{sid}_mask.png")} if split == "test" else {}),
                }
        (tmp / "sources.json").write_text(json.dumps(sources, indent=1))

    def tree_root(self, category: str) -> Path:
        """The converted MVTec-like tree of `category` (built on first use, then cached)."""
        if category not in self._trees:
            recipe = {
                "stage": "eyecandies_m3dm",
                "version": CONVERSION_VERSION,
                "root": str(self.root.resolve()),
                "category": category,
                "files": fingerprint_tree(self.root / category),
                "rgb": self.rgb_item,
                "focal": self.focal,
            }
            self._trees[category] = cached_dir(
                "eyecandies", recipe, lambda tmp: self._convert(category, tmp)
            )
        return self._trees[category]

    def _records(self, category: str, split: str) -> list[Record]:
        tree = self.tree_root(category)
        sources = json.loads((tree / "sources.json").read_text())
        recs = scan_split(tree, category, split, True, required=False)
        return [
            Record(**{**r.__dict__, "files": {**r.files, **sources.get(r.id, {})}}) for r in recs
        ]

    def _load(self, record: Record) -> Sample:
        files = {k: v for k, v in record.files.items() if not k.startswith("raw_")}
        sample = load_organized(Record(**{**record.__dict__, "files": files}), self.name)
        sample.source = dict(record.files)
        return sample

    def fingerprint(self) -> str:
        from benchmark.cache import recipe_hash

        return recipe_hash(
            {"raw": super().fingerprint(), "rgb": self.rgb_item, "focal": self.focal}
        )


DATASETS.register(
    "eyecandies",
    factory=Eyecandies,
    summary="Eyecandies raw release (depth PNG + pose -> organized xyz, M3DM background rule)",
    modalities=("points", "xyz_grid", "rgb"),
    provenance="raw layout of eyecan-ai Eyecandies; conversion re-implemented from the "
    "description of nomewang/M3DM utils/preprocess_eyecandies.py",
)
