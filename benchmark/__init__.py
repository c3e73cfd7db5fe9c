"""3D industrial anomaly-detection benchmark: framework core.

Importing this package applies the torchvision import fix (``benchmark.compat``) before anything
imports open_clip or timm. torch itself is imported only when already needed elsewhere, so that
``python -m benchmark list`` stays quick.
"""

from __future__ import annotations

import importlib.util as _ilu

__version__ = "0.1.0"

if _ilu.find_spec("torchvision") is not None:
    from benchmark.compat import import_torchvision as _import_torchvision

    _import_torchvision()
