"""Import fixes for the pinned CPU stack (see specs/dependencies.md §1).

The package index's torchvision 0.28.0 is linked against CUDA libraries; beside the torch 2.13.0+cpu
build its C++ extension cannot load, and its fake-kernel registration for ``torchvision::nms`` then
fails at import. Defining the two op schemas first lets the pure-Python parts (transforms, models,
``FrozenBatchNorm2d``) import. Only torchvision's C++ ops (nms, deform_conv2d, image decoding) stay
unavailable; nothing in this project uses them. Where torchvision imports normally, this is a
no-op.
"""

from __future__ import annotations

import sys
from types import ModuleType

_TORCHVISION_LIB = None  # keeps the schema library alive for the lifetime of the process


def import_torchvision() -> ModuleType | None:
    """Import torchvision, defining the missing op schemas when its C++ extension cannot load.

    Returns None when torchvision is not installed at all.
    """
    global _TORCHVISION_LIB
    try:
        import torchvision

        return torchvision
    except ModuleNotFoundError:
        return None
    except RuntimeError as err:
        if "torchvision::nms" not in str(err):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    import torch

    if _TORCHVISION_LIB is None:
        _TORCHVISION_LIB = torch.library.Library("torchvision", "DEF")
        _TORCHVISION_LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TORCHVISION_LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision

    return torchvision
