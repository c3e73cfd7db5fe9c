"""The synthetic dataset: the embedded default of the benchmark.

``DATASETS.create("synthetic", format="mvtec3d", seed=0, size="small", categories=None, root=None)``
generates a tree in the exact on-disk format of the chosen real dataset (once, into the cache,
keyed by its recipe; or into `root` when given) and returns that format's real adapter reading it,
so the synthetic data goes through the same loading code as the real datasets.
``python -m benchmark synthetic --format F --out DIR`` writes a tree to a folder of your choice.

On-disk layouts written (see `_generator.py`):
- mvtec3d: ``<cat>/{train,validation}/good/{xyz/NNN.tiff,rgb/NNN.png}``,
  ``<cat>/test/<good|bulge|dent|hole|crack|scratch|bend|color>/{xyz,rgb,gt}/NNN.*`` (GT PNG holds
  class ids 255, 254, ... as in the release), ``<cat>/calibration/camera_parameters.json``,
  ``<cat>/class_ids.json``.
- eyecandies: ``<Cat>/{train,val,test_public}/data/<id>_{image_0..5.png, depth.png (16-bit),
  info_depth.yaml, normals.png, pose.txt, mask.png, bumps/dents/colors/normals_mask.png,
  metadata.yaml, object_params.yaml}``; train ids 3 digits, val/test 2 digits; good test first.
- real3d: ``<cat>/train/<k>_template.pcd`` (binary_compressed),
  ``<cat>/test/<i>_<good|bulge|sink>.pcd`` (binary), ``<cat>/gt/<i>_<kind>.txt``
  (``x y z label``, whitespace). Units mm.
- anomaly_shapenet: ``dataset/pcd/<cls>/{train/<cls>_template<k>.pcd,
  test/<cls>_<positive|kind><k>.pcd, GT/<cls>_<kind><k>.txt}`` (ascii pcd, comma GT); the last
  class goes to ``dataset/new_pcd/`` (the extra-classes folder) when there are several.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchmark.cache import cached_dir
from benchmark.errors import DatasetError
from benchmark.registry import DATASETS
from datasets.synthetic._generator import FORMATS, GENERATOR_VERSION, SIZES, generate


def create_synthetic(
    format: str = "mvtec3d",
    seed: int = 0,
    size: str = "small",
    categories: int | None = None,
    root: str | os.PathLike | None = None,
    **adapter_options,
):
    """Generates (once) and returns the adapter of `format` reading the synthetic tree."""
    if format not in FORMATS:
        raise DatasetError(f"synthetic: unknown format {format!r}; known: {', '.join(FORMATS)}")
    if size not in SIZES:
        raise DatasetError(f"synthetic: unknown size {size!r}; known: {', '.join(SIZES)}")
    recipe = {"format": format, "seed": int(seed), "size": size, "categories": categories,
              "version": GENERATOR_VERSION}  # fmt: skip

    def build(tmp: Path) -> None:
        generate(tmp, format, int(seed), size, categories)

    if root is None:
        tree = cached_dir("synthetic", recipe, build)
    else:
        tree = Path(root)
        if (tree / "SYNTHETIC.json").is_file():
            _check_existing(tree, format, int(seed), size, categories)
        else:
            tree.parent.mkdir(parents=True, exist_ok=True)
            tree = _generate_into(tree, build)
    adapter = DATASETS.create(format, root=tree, **adapter_options)
    adapter.synthetic_format = format
    return adapter


def _check_existing(tree: Path, format: str, seed: int, size: str, categories: int | None) -> None:
    import json

    info = json.loads((tree / "SYNTHETIC.json").read_text())
    want = {
        "format": format,
        "seed": seed,
        "size": size,
        "categories": SIZES[size].categories if categories is None else int(categories),
    }
    have = {"format": info.get("format"), "seed": info.get("seed"), "size": info.get("size"),
            "categories": len(info.get("categories", []))}  # fmt: skip
    if have != want:
        raise DatasetError(
            f"{tree / 'SYNTHETIC.json'}: the folder holds a different synthetic dataset "
            f"({have}); asked for {want}"
        )


def _generate_into(target: Path, build) -> Path:
    """Generates into a temporary sibling folder and renames it into place (nothing half)."""
    import shutil
    import tempfile

    if target.exists() and any(target.iterdir()):
        raise DatasetError(f"{target}: exists, is not empty and holds no synthetic dataset")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(tmp)
        if target.exists():
            target.rmdir()
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def write_synthetic(out: str | os.PathLike, format: str = "mvtec3d", seed: int = 0,
                    size: str = "small", categories: int | None = None) -> dict:  # fmt: skip
    """Writes a synthetic tree to `out` (used by ``python -m benchmark synthetic``)."""
    if format not in FORMATS:
        raise DatasetError(f"synthetic: unknown format {format!r}; known: {', '.join(FORMATS)}")
    summary: dict = {}

    def build(tmp: Path) -> None:
        summary.update(generate(tmp, format, int(seed), size, categories))

    _generate_into(Path(out), build)
    return summary


DATASETS.register(
    "synthetic",
    factory=create_synthetic,
    summary="procedural objects with subtle anomalies, written in any real dataset's format "
    "(the embedded default)",
    modalities=("points", "xyz_grid", "rgb"),
    provenance="written for this benchmark (procedural height fields / parametric surfaces)",
    smoke={"format": "mvtec3d", "size": "small", "categories": 1},
)

create_synthetic.formats = FORMATS  # type: ignore[attr-defined]  # (for `describe`)

__all__ = ["create_synthetic", "generate", "write_synthetic", "FORMATS", "SIZES"]
