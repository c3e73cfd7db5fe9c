"""`python -m benchmark pretrain`: Point-MAE masked-reconstruction pre-training (the backbone
IMRNet fine-tunes; the checkpoint also serves patchcore_pointmae / reg3dad as ``pretrained=PATH``).

Data: a folder of clouds (.pcd/.ply/.npy/.txt, searched recursively; e.g. ShapeNet-55 as its
authors distribute it) or a registered dataset's normal training clouds (``synthetic`` by
default, generated on the fly; other datasets need ``--root``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from benchmark.errors import ConfigError

HELP = "pre-train the Point-MAE masked autoencoder (IMRNet backbone) on a folder or a dataset"
METHODS_WITH_PRETRAINING = ("imrnet", "pointmae")
#: the IMRNet paper pre-trains at 8192 points with its 256 x 64 patch structure (Sec. 5.3)
METHOD_DEFAULTS = {
    "imrnet": {"npoints": 8192, "num_group": 256, "group_size": 64, "mask_ratio": 0.4},
    "pointmae": {},  # the official Point-MAE recipe (PretrainConfig defaults)
}
SUFFIXES = (".pcd", ".ply", ".npy", ".txt")


class CloudFolder:
    """The clouds under a folder (sorted paths), read lazily: ``folder[i]`` -> (N,3) float32."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.paths = sorted(p for p in self.root.rglob("*")
                            if p.suffix.lower() in SUFFIXES and p.is_file())  # fmt: skip
        if not self.paths:
            raise ConfigError(f"{self.root}: no point clouds ({', '.join(SUFFIXES)}) found")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        from benchmark.components.pointcloud_io import read_point_cloud

        path = self.paths[i]
        suffix = path.suffix.lower()
        if suffix == ".npy":
            pts = np.load(path)
        elif suffix == ".txt":
            pts = np.loadtxt(path, delimiter="," if "," in path.open().readline() else None,
                             ndmin=2)  # fmt: skip
        else:
            pts = read_point_cloud(path).points
        return np.asarray(pts, dtype=np.float32)[:, :3]


def dataset_clouds(name: str, root: str | None, fmt: str, seed: int,
                   categories: list[str] | None) -> list:  # fmt: skip
    """Loaders of the normal training clouds of a registered dataset (all or some categories)."""
    from benchmark.registry import DATASETS

    if name == "synthetic":
        ds = DATASETS.create("synthetic", format=fmt, seed=seed, size="small", root=root)
    else:
        if root is None:
            raise ConfigError(f"pretrain: dataset {name!r} needs --root PATH")
        ds = DATASETS.create(name, root=root)
    cats = categories or ds.categories
    items = []
    for cat in cats:
        train = ds.train(ds.check_category(cat))
        for i in range(len(train)):
            items.append(lambda train=train, i=i: train[i].points)
    return items


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=METHODS_WITH_PRETRAINING, default="imrnet",
                        help="whose pre-training recipe (imrnet: 8192 points, 256 x 64 patches, "
                             "mask 0.4; pointmae: the official 1024 / 64 x 32 / 0.6)")
    parser.add_argument("--data", default="synthetic",
                        help="a folder of clouds, or a registered dataset name (default synthetic)")
    parser.add_argument("--root", help="dataset root (for a registered dataset)")
    parser.add_argument("--format", default="anomaly_shapenet",
                        help="synthetic dataset format (default anomaly_shapenet)")
    parser.add_argument("--categories", nargs="+", help="only these dataset categories")
    parser.add_argument("--out", required=True, help="checkpoint file to write (and resume)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--npoints", type=int)
    parser.add_argument("--num-group", type=int)
    parser.add_argument("--group-size", type=int)
    parser.add_argument("--mask-ratio", type=float)
    parser.add_argument("--warmup-epochs", type=int)
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--model", type=json.loads, default={},
                        help='model shape overrides as JSON, e.g. \'{"trans_dim": 96}\' '
                             "(only checkpoints of the official shape load into the encoder-only "
                             "Point-MAE users)")
    parser.add_argument("--init", default="none",
                        help="starting weights: none (random), official (pretrain.pth) or a path")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing --out")
    parser.add_argument("--save-every", type=int, default=1, help="epochs between checkpoints")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")


def build_config(args: argparse.Namespace):
    from benchmark.components.backbones.pointmae_mae import PretrainConfig

    values = dict(METHOD_DEFAULTS[args.method])
    for field in ("epochs", "batch_size", "lr", "npoints", "num_group", "group_size",
                  "mask_ratio", "warmup_epochs"):  # fmt: skip
        v = getattr(args, field)
        if v is not None:
            values[field] = v
    if args.no_augment:
        values["augment"] = False
    values["seed"] = args.seed
    shape = dict(args.model or {})
    unknown = set(shape) - {"trans_dim", "depth", "decoder_depth", "num_heads", "encoder_widths"}
    if unknown:
        raise ConfigError(f"pretrain --model: unknown keys {sorted(unknown)}")
    if "encoder_widths" in shape:
        shape["encoder_widths"] = tuple(shape["encoder_widths"])
    return PretrainConfig(**values, **shape)


def execute(args: argparse.Namespace) -> int:
    from benchmark.components.backbones.pointmae_mae import pretrain_pointmae

    data = Path(args.data)
    if data.is_dir():
        clouds = CloudFolder(data)
        source = f"{len(clouds)} clouds under {data}"
    else:
        clouds = dataset_clouds(args.data, args.root, args.format, args.seed, args.categories)
        source = f"{len(clouds)} normal training clouds of {args.data}"
    init = {"none": False, "official": True}.get(args.init, args.init)
    cfg = build_config(args)
    print(f"pre-training ({args.method} recipe) on {source} -> {args.out}", file=sys.stderr)
    summary = pretrain_pointmae(
        clouds, args.out, cfg, init=init, resume=not args.fresh, save_every=args.save_every,
        device=args.device, log=lambda m: print(m, file=sys.stderr),
    )  # fmt: skip
    print(f"wrote {summary['out']}: {summary['epochs']} epochs (from {summary['start_epoch']}), "
          f"final loss {summary['losses'][-1] if summary['losses'] else float('nan'):.5f}, "
          f"{summary['clouds_per_s']:.2f} clouds/s")  # fmt: skip
    return 0
