"""Defaults that make `make bench METHOD=...` work without extra flags."""

from __future__ import annotations

import pytest

from benchmark.errors import ConfigError
from benchmark.run import protocols
from benchmark.run.spec import spec_from_dict


def test_zero_shot_methods_default_to_the_zero_shot_protocol():
    assert spec_from_dict({"methods": ["pointad_plus"]}).protocols == ["zero_shot"]
    assert spec_from_dict({"methods": ["btf_fpfh"]}).protocols == ["one_class"]
    mixed = spec_from_dict({"methods": ["btf_fpfh", "pointad"]})
    assert mixed.protocols == ["one_class"]
    explicit = spec_from_dict({"methods": ["pointad"], "protocol": "cross_dataset"})
    assert explicit.protocols == ["cross_dataset"]


def test_synthetic_has_a_default_auxiliary_category():
    assert protocols.default_aux("synthetic", ["plate", "dome", "bowl"]) == ["bowl"]
    assert protocols.default_aux("mvtec3d", ["carrot", "cookie", "dowel", "foam"]) == [
        "carrot", "cookie", "dowel"]
    with pytest.raises(ConfigError, match="--aux"):
        protocols.default_aux("anomaly_shapenet", ["ashtray0", "bag0"])
