"""One place that fixes every random number generator from a seed."""

from __future__ import annotations

import os
import random

import numpy as np


def seed_everything(seed: int) -> np.random.Generator:
    """Seeds Python, numpy, torch and Open3D (when imported); returns a numpy Generator."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass
    import sys

    if "open3d" in sys.modules:
        sys.modules["open3d"].utility.random.seed(seed % (2**31))
    return np.random.default_rng(seed)
