"""The synthetic dataset generator: writes a tree in the exact on-disk format of one real dataset.

Organized formats (mvtec3d, eyecandies): a height-field object on a table plane is scanned by a
pinhole camera; each pixel's ray is intersected with the surface by fixed-point iteration (the
shapes have bounded slopes, so the iteration contracts); RGB is Lambert shading of a textured
albedo. Unorganized formats (real3d, anomaly_shapenet): parametric surfaces sampled by area.
Normal variation: shape jitter per sample, pose (rotation, translation, camera tilt), scale and
sensor noise. Anomalies: see `_anomalies.py`. Everything derives from one seed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from pathlib import Path as _P

import numpy as np
import yaml

from benchmark.components.pointcloud_io import write_gt_txt, write_pcd, write_png, write_xyz_tiff
from datasets.synthetic._anomalies import height_anomaly, surface_anomaly
from datasets.synthetic._surfaces import HEIGHT_FAMILIES, SURFACE_FAMILIES, sample_surface

FORMATS = ("mvtec3d", "eyecandies", "real3d", "anomaly_shapenet")
GENERATOR_VERSION = 2


@dataclass(frozen=True)
class SizeSpec:
    categories: int
    train: int
    validation: int
    test_good: int
    test_bad: int
    grid: int
    points: int
    template_points: int


SIZES = {
    "small": SizeSpec(4, 4, 2, 3, 4, 96, 3000, 4000),
    "medium": SizeSpec(10, 20, 4, 10, 20, 256, 20000, 30000),
}

# anomaly kinds per format, and the folder / file name each format uses for them
KINDS = {
    "mvtec3d": {"bulge": "bulge", "dent": "dent", "hole": "hole", "crack": "crack",
                "scratch": "scratch", "bend": "bend", "stain": "color"},
    "eyecandies": {"bulge": "bumps", "dent": "dents", "stain": "colors", "scratch": "normals"},
    "real3d": {"bulge": "bulge", "dent": "sink"},
    "anomaly_shapenet": {"bulge": "bulge", "dent": "concavity", "crack": "crack", "hole": "hole",
                         "scratch": "scratch", "bend": "bending"},
}  # fmt: skip
FRACTION = (0.02, 0.08)  # anomalous share of the object's points / pixels

# normal variation (object units unless stated)
VARIATION = {
    "organized": {"rotation_deg": 6.0, "shift": 0.04, "scale": 0.03, "tilt_deg": 1.5},
    "surface": {"rotation_deg": 1.0, "scale": 0.015},
}
NOISE = {"mvtec3d": 0.004, "eyecandies": 0.003, "real3d": 0.003, "anomaly_shapenet": 0.004}

_PALETTE = [
    (0.80, 0.55, 0.30), (0.35, 0.55, 0.75), (0.70, 0.30, 0.30), (0.55, 0.70, 0.35),
    (0.75, 0.70, 0.40), (0.50, 0.40, 0.65), (0.30, 0.60, 0.60), (0.85, 0.45, 0.55),
    (0.45, 0.45, 0.45), (0.60, 0.50, 0.35),
]  # fmt: skip


def _write_text(path, text: str) -> None:
    path = _P(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _write_xyz_tiff(path, xyz):
    write_xyz_tiff(path, xyz, atomic=False)


def _write_png(path, image):
    write_png(path, image, atomic=False)


def _write_pcd(path, points, data="binary"):
    write_pcd(path, points, data=data, atomic=False)


def _write_gt_txt(path, points, labels, delimiter=" "):
    write_gt_txt(path, points, labels, delimiter=delimiter, atomic=False)


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *[int(k) for k in keys]]))


def _rot2(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


def _small_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    ang = np.radians(rng.uniform(-max_deg, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(ang) * k + (1 - np.cos(ang)) * (k @ k)


# ------------------------------------------------------------------------------------------------
# organized scenes


@dataclass
class Camera:
    """Pinhole camera looking at the table; `rcw` maps table-frame vectors to camera frame."""

    rcw: np.ndarray
    centre: np.ndarray
    focal: float
    width: int
    height: int


def tilted_camera(distance: float, tilt_rad: float, focal: float, size: int) -> Camera:
    c = np.array([0.0, -distance * np.sin(tilt_rad), distance * np.cos(tilt_rad)])
    fwd = -c / np.linalg.norm(c)
    x_c = np.array([1.0, 0.0, 0.0])
    y_c = np.cross(fwd, x_c)
    return Camera(np.stack([x_c, y_c, fwd]), c, focal, size, size)


def render_height_field(height, cam: Camera, iters: int = 30):
    """Intersects every pixel ray with the surface z = height(x, y) (table frame).
    Returns table-frame hit points (H,W,3) and camera-frame depth (H,W)."""
    v, u = np.mgrid[0 : cam.height, 0 : cam.width].astype(np.float64)
    rays = np.stack(
        [(u - cam.width / 2) / cam.focal, (v - cam.height / 2) / cam.focal, np.ones_like(u)], -1
    )
    d = rays @ cam.rcw  # rows of rcw are the camera axes in the table frame
    t = -cam.centre[2] / d[..., 2]
    for _ in range(iters):
        p = cam.centre + t[..., None] * d
        t = (height(p[..., 0], p[..., 1]) - cam.centre[2]) / d[..., 2]
    p = cam.centre + t[..., None] * d
    return p, t


class OrganizedScene:
    """One organized sample: a posed height-field object (+ anomaly) on a table."""

    def __init__(
        self,
        family: str,
        rng: np.random.Generator,
        scale: float,
        kind: str | None,
        fraction: float = 0.0,
    ) -> None:
        var = VARIATION["organized"]
        self.shape = HEIGHT_FAMILIES[family](rng)
        self.scale = scale * (1 + rng.uniform(-var["scale"], var["scale"]))
        self.rot = _rot2(np.radians(rng.uniform(-var["rotation_deg"], var["rotation_deg"])))
        self.shift = rng.uniform(-var["shift"], var["shift"], size=2) * scale
        self.anomaly = height_anomaly(kind, self.shape, fraction, rng) if kind else None
        self.params = {"family": family, "scale": float(self.scale), "shift": self.shift.tolist(),
                       "rotation": float(np.degrees(np.arctan2(self.rot[1, 0], self.rot[0, 0]))),
                       "anomaly": kind, "fraction": float(fraction)}  # fmt: skip

    def to_object(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = np.stack([x - self.shift[0], y - self.shift[1]], -1) @ self.rot / self.scale
        return q[..., 0], q[..., 1]

    def fields(self, x: np.ndarray, y: np.ndarray):
        """Metric height, colour weight of the anomaly and GT at table points."""
        u, v = self.to_object(x, y)
        h = self.shape(u, v)
        dh = w = np.zeros_like(h)
        gt = np.zeros(h.shape, dtype=bool)
        if self.anomaly is not None:
            dh, w, gt = self.anomaly(u, v, h)
        return np.maximum(h + dh, 0.0) * self.scale, w, gt, h > 0

    def height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.fields(x, y)[0]


def _appearance(scene: OrganizedScene, hits: np.ndarray, colour, eps: float):
    """Albedo (H,W,3) and table-frame normals (H,W,3) of the visible surface."""
    x, y = hits[..., 0], hits[..., 1]
    h, w, _gt, on_obj = scene.fields(x, y)
    hx = (scene.height(x + eps, y) - scene.height(x - eps, y)) / (2 * eps)
    hy = (scene.height(x, y + eps) - scene.height(x, y - eps)) / (2 * eps)
    n = np.stack([-hx, -hy, np.ones_like(hx)], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    u, v = scene.to_object(x, y)
    texture = 1 + 0.06 * np.sin(7 * u + 3 * v) * np.sin(5 * v - 2 * u)
    albedo = np.where((on_obj | (h > 0))[..., None], np.asarray(colour) * texture[..., None],
                      np.array([0.42, 0.42, 0.45]))  # fmt: skip
    stain = np.array([0.25, 0.15, 0.08])
    albedo = albedo * (1 - w[..., None]) + stain * w[..., None]
    return albedo, n


def _shade(albedo: np.ndarray, normals: np.ndarray, light, rng, noise: float = 2.0) -> np.ndarray:
    """Lambert shading with ambient light and sensor noise -> uint8 image."""
    light = np.asarray(light, dtype=np.float64) / np.linalg.norm(light)
    lam = 0.35 + 0.65 * np.clip(normals @ light, 0, None)
    img = 255 * albedo * lam[..., None] + rng.normal(0, noise, size=albedo.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------
# format writers


def _plan(spec: SizeSpec, fmt: str, split: str, rng: np.random.Generator) -> list[str | None]:
    """Anomaly kind (or None) of every sample of a split, in file order (good first)."""
    if split != "test":
        count = spec.train if split == "train" else spec.validation
        return [None] * count
    kinds = list(KINDS[fmt])
    start = int(rng.integers(len(kinds)))  # small splits still see every kind across categories
    bad = [kinds[(start + j) % len(kinds)] for j in range(spec.test_bad)]
    return [None] * spec.test_good + [bad[i] for i in rng.permutation(len(bad))]


def _organized_sample(fmt: str, family: str, colour, kind, rng, spec: SizeSpec, eyecandies: bool):
    fraction = rng.uniform(*FRACTION) if kind else 0.0
    size = spec.grid
    if eyecandies:
        scale, half_view, focal = 0.55, 0.85, 711.11
        tilt = np.radians(25.0 + rng.uniform(-1, 1))
        distance = half_view * focal / (size / 2)
    else:
        scale, half_view, distance = 0.04, 0.05, 0.35
        focal = distance * (size / 2) / half_view
        tilt = np.radians(rng.uniform(-1, 1) * VARIATION["organized"]["tilt_deg"])
    scene = OrganizedScene(family, rng, scale, kind, fraction)
    cam = tilted_camera(distance, tilt, focal, size)
    hits, depth = render_height_field(scene.height, cam)
    sigma = NOISE[fmt] * scale * 0.1
    depth = depth + rng.normal(0, sigma, size=depth.shape)
    _, _, gt, _ = scene.fields(hits[..., 0], hits[..., 1])
    eps = 2 * half_view / size
    return scene, cam, hits, depth, gt, eps, fraction


def _write_mvtec3d(out: Path, cat: str, cat_idx: int, spec: SizeSpec, seed: int) -> None:
    family = list(HEIGHT_FAMILIES)[cat_idx]
    colour = _PALETTE[cat_idx % len(_PALETTE)]
    kinds = KINDS["mvtec3d"]
    class_ids = {"0": "good"}
    for k, name in enumerate(kinds.values()):
        class_ids[str(255 - k)] = name
    for s_idx, split in enumerate(("train", "validation", "test")):
        plan = _plan(spec, "mvtec3d", split, _rng(seed, 1, cat_idx, s_idx, 999))
        counters: dict[str, int] = {}
        for i, kind in enumerate(plan):
            rng = _rng(seed, 1, cat_idx, s_idx, i)
            scene, cam, hits, depth, gt, eps, _ = _organized_sample(
                "mvtec3d", family, colour, kind, rng, spec, eyecandies=False
            )
            albedo, normals = _appearance(scene, hits, colour, eps)
            rgb = _shade(albedo, normals, (0.3, -0.4, 1.0), rng)
            v, u = np.mgrid[0 : cam.height, 0 : cam.width]
            xyz = np.stack([(u - cam.width / 2) * depth / cam.focal,
                            (v - cam.height / 2) * depth / cam.focal, depth], -1)  # fmt: skip
            # missing measurements: surfaces facing away from the projector, plus speckle
            invalid = (normals[..., 0] < -0.7) | (rng.random(depth.shape) < 0.003)
            xyz[invalid] = 0.0
            defect = "good" if kind is None else kinds[kind]
            sid = f"{counters.get(defect, 0):03d}"
            counters[defect] = counters.get(defect, 0) + 1
            base = out / cat / split / defect
            _write_xyz_tiff(base / "xyz" / f"{sid}.tiff", xyz.astype(np.float32))
            _write_png(base / "rgb" / f"{sid}.png", rgb)
            if split == "test":
                gid = 0 if kind is None else 255 - list(kinds).index(kind)
                _write_png(base / "gt" / f"{sid}.png", (gt * gid).astype(np.uint8))
    calib = {"fx": float(cam.focal), "fy": float(cam.focal), "cx": cam.width / 2,
             "cy": cam.height / 2, "image_width": cam.width, "image_height": cam.height,
             "note": "synthetic camera"}  # fmt: skip
    _write_text(out / cat / "calibration" / "camera_parameters.json", json.dumps(calib, indent=1))
    _write_text(out / cat / "class_ids.json", json.dumps(class_ids, indent=1))


def _write_eyecandies(out: Path, cat: str, cat_idx: int, spec: SizeSpec, seed: int) -> None:
    family = list(HEIGHT_FAMILIES)[cat_idx]
    colour = _PALETTE[cat_idx % len(_PALETTE)]
    kinds = KINDS["eyecandies"]
    lights = [
        (0.0, -0.3, 1.0),
        (0.0, -1.0, 0.6),
        (1.0, 0.0, 0.6),
        (0.0, 1.0, 0.6),
        (-1.0, 0.0, 0.6),
        (0.2, -0.2, 1.0),
    ]  # all spotlights, bottom, right, top, left, global
    # the world frame of the release: X = table x, Y = -height, Z = table y (M3DM's convention)
    world = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])
    for s_idx, (split, folder, digits) in enumerate(
        (("train", "train", 3), ("validation", "val", 2), ("test", "test_public", 2))
    ):
        plan = _plan(spec, "eyecandies", split, _rng(seed, 2, cat_idx, s_idx, 999))
        data = out / cat / folder / "data"
        for i, kind in enumerate(plan):
            rng = _rng(seed, 2, cat_idx, s_idx, i)
            scene, cam, hits, depth, gt, eps, fraction = _organized_sample(
                "eyecandies", family, colour, kind, rng, spec, eyecandies=True
            )
            sid = f"{i:0{digits}d}"
            albedo, normals = _appearance(scene, hits, colour, eps)
            images = [_shade(albedo, normals, light, _rng(seed, 2, cat_idx, s_idx, i, k))
                      for k, light in enumerate(lights)]  # fmt: skip
            lo, hi = float(depth.min()), float(depth.max())
            depth16 = np.round((depth - lo) / (hi - lo) * 65535).astype(np.uint16)
            pose = np.eye(4)
            pose[:3, :3] = cam.rcw @ world.T
            pose[:3, 3] = -cam.rcw @ cam.centre
            nrm_world = normals @ world.T
            for k, img in enumerate(images):
                _write_png(data / f"{sid}_image_{k}.png", img)
            _write_png(data / f"{sid}_depth.png", depth16)
            _write_png(
                data / f"{sid}_normals.png", np.round((nrm_world + 1) * 127.5).astype(np.uint8)
            )
            info = {"normalization": {"max": hi, "min": lo}}
            _write_text(data / f"{sid}_info_depth.yaml", yaml.safe_dump(info))
            data.mkdir(parents=True, exist_ok=True)
            np.savetxt(data / f"{sid}_pose.txt", pose)
            mask = (gt * 255).astype(np.uint8)
            empty = np.zeros_like(mask)
            meta = {"anomalous": int(kind is not None)}
            for name in ("bumps", "dents", "colors", "normals"):
                this = kind is not None and kinds[kind] == name
                meta[f"anomalous_{name}"] = int(this)
                _write_png(data / f"{sid}_{name}_mask.png", mask if this else empty)
            _write_png(data / f"{sid}_mask.png", mask)
            _write_text(data / f"{sid}_metadata.yaml", yaml.safe_dump(meta, sort_keys=False))
            _write_text(
                data / f"{sid}_object_params.yaml", yaml.safe_dump({"object": scene.params})
            )


def _surface_sample(fmt: str, family: str, kind, rng, n: int, scale: float):
    var = VARIATION["surface"]
    patches = SURFACE_FAMILIES[family](rng)
    pts, nrm = sample_surface(patches, n, rng)
    labels = np.zeros(len(pts), dtype=np.uint8)
    if kind:
        pts, labels = surface_anomaly(kind, pts, nrm, rng.uniform(*FRACTION), rng)
    rot = _small_rotation(rng, var["rotation_deg"])
    s = scale * (1 + rng.uniform(-var["scale"], var["scale"]))
    pts = pts @ rot.T * s + rng.uniform(-0.3, 0.3, size=3) * scale
    pts = pts + rng.normal(0, NOISE[fmt] * s, size=pts.shape)
    return pts.astype(np.float32), labels


def _write_real3d(out: Path, cat: str, cat_idx: int, spec: SizeSpec, seed: int) -> None:
    family = list(SURFACE_FAMILIES)[cat_idx]
    kinds = KINDS["real3d"]
    scale = 17.0  # mm
    for k in range(spec.train):
        pts, _ = _surface_sample("real3d", family, None, _rng(seed, 3, cat_idx, 0, k),
                                 spec.template_points, scale)  # fmt: skip
        _write_pcd(out / cat / "train" / f"{k}_template.pcd", pts, data="binary_compressed")
    plan = _plan(spec, "real3d", "test", _rng(seed, 3, cat_idx, 2, 999))
    for i, kind in enumerate(plan):
        pts, labels = _surface_sample("real3d", family, kind, _rng(seed, 3, cat_idx, 2, i),
                                      spec.points, scale)  # fmt: skip
        name = f"{i}_good" if kind is None else f"{i}_{kinds[kind]}"
        _write_pcd(out / cat / "test" / f"{name}.pcd", pts, data="binary")
        if kind is not None:
            _write_gt_txt(out / cat / "gt" / f"{name}.txt", pts, labels, delimiter=" ")


def _write_anomaly_shapenet(out: Path, cat: str, cat_idx: int, spec: SizeSpec, seed: int,
                            extra: bool) -> None:  # fmt: skip
    family = list(SURFACE_FAMILIES)[cat_idx]
    kinds = KINDS["anomaly_shapenet"]
    base = out / "dataset" / ("new_pcd" if extra else "pcd") / cat
    scale = 0.5
    for k in range(spec.train):
        pts, _ = _surface_sample("anomaly_shapenet", family, None, _rng(seed, 4, cat_idx, 0, k),
                                 spec.template_points, scale)  # fmt: skip
        _write_pcd(base / "train" / f"{cat}_template{k}.pcd", pts, data="ascii")
    plan = _plan(spec, "anomaly_shapenet", "test", _rng(seed, 4, cat_idx, 2, 999))
    counters: dict[str, int] = {}
    for i, kind in enumerate(plan):
        pts, labels = _surface_sample("anomaly_shapenet", family, kind,
                                      _rng(seed, 4, cat_idx, 2, i), spec.points, scale)  # fmt: skip
        word = "positive" if kind is None else kinds[kind]
        name = f"{cat}_{word}{counters.get(word, 0)}"
        counters[word] = counters.get(word, 0) + 1
        _write_pcd(base / "test" / f"{name}.pcd", pts, data="ascii")
        if kind is not None:
            _write_gt_txt(base / "GT" / f"{name}.txt", pts, labels, delimiter=",")


def category_names(fmt: str, count: int) -> list[str]:
    if fmt in ("mvtec3d", "eyecandies"):
        names = list(HEIGHT_FAMILIES)[:count]
        return [n.capitalize() for n in names] if fmt == "eyecandies" else names
    names = list(SURFACE_FAMILIES)[:count]
    return [f"{n}0" for n in names] if fmt == "anomaly_shapenet" else names


def generate(out: str | Path, fmt: str = "mvtec3d", seed: int = 0, size: str = "small",
             categories: int | None = None) -> dict:  # fmt: skip
    """Writes a synthetic dataset of format `fmt` under `out`; returns a summary dict."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown synthetic format {fmt!r}; known: {', '.join(FORMATS)}")
    if size not in SIZES:
        raise ValueError(f"unknown synthetic size {size!r}; known: {', '.join(SIZES)}")
    spec = SIZES[size]
    n_cat = spec.categories if categories is None else int(categories)
    if not 1 <= n_cat <= 10:
        raise ValueError(f"categories must be between 1 and 10, got {categories}")
    out = Path(out)
    start = time.perf_counter()
    names = category_names(fmt, n_cat)
    for idx, cat in enumerate(names):
        if fmt == "mvtec3d":
            _write_mvtec3d(out, cat, idx, spec, seed)
        elif fmt == "eyecandies":
            _write_eyecandies(out, cat, idx, spec, seed)
        elif fmt == "real3d":
            _write_real3d(out, cat, idx, spec, seed)
        else:
            _write_anomaly_shapenet(out, cat, idx, spec, seed, extra=n_cat > 1 and idx == n_cat - 1)
    summary = {"format": fmt, "seed": seed, "size": size, "categories": names,
               "generator_version": GENERATOR_VERSION,
               "seconds": round(time.perf_counter() - start, 3)}  # fmt: skip
    _write_text(out / "SYNTHETIC.json", json.dumps(summary, indent=1))
    return summary
