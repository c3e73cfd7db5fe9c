"""WideResNet-50-2 feature extractor: shapes, strict weight loading, offline errors, helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.components.backbones.wide_resnet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    WRN50_WEIGHTS,
    WideResNet50Features,
    _timm,
    btf_pool,
    imagenet_normalize,
)
from benchmark.errors import ContractError, WeightsError


@pytest.fixture(scope="module")
def saved_full_model(tmp_path_factory):
    """A classification wide_resnet50_2 (random, seeded) saved as a plain state dict, fc included,
    as timm / torchvision checkpoints are."""
    torch.manual_seed(0)
    model = _timm().create_model("wide_resnet50_2", pretrained=False).eval()
    path = tmp_path_factory.mktemp("wrn") / "wrn50.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_shapes_random_init() -> None:
    net = WideResNet50Features(pretrained=False)
    assert net.weights_path is None and not net.training
    feats = net(torch.zeros(1, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(1, 512, 8, 12), (1, 1024, 4, 6)]
    assert net.channels == [512, 1024]


def test_loads_state_dict_file(saved_full_model) -> None:
    model, path = saved_full_model
    net = WideResNet50Features(weights=path)
    assert net.weights_path == path
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        h = model.maxpool(model.act1(model.bn1(model.conv1(x))))
        l2 = model.layer2(model.layer1(h))
        l3 = model.layer3(l2)
    out = net(x)
    assert torch.allclose(out[0], l2, atol=1e-5) and torch.allclose(out[1], l3, atol=1e-5)


def test_wrong_file_is_rejected(tmp_path, saved_full_model) -> None:
    model, _ = saved_full_model
    state = model.state_dict()
    state.pop("layer3.0.conv1.weight")
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(WeightsError, match="layer3.0.conv1.weight"):
        WideResNet50Features(weights=bad)


def test_offline_error_names_file() -> None:
    with pytest.raises(WeightsError) as err:
        WideResNet50Features()
    assert WRN50_WEIGHTS["racm_in1k"].filename in str(err.value)
    with pytest.raises(WeightsError, match=WRN50_WEIGHTS["tv_in1k"].filename):
        WideResNet50Features(tag="tv_in1k")


def test_imagenet_normalize() -> None:
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 255
    x = imagenet_normalize(rgb)
    assert x.shape == (3, 4, 5) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.full((4, 5), (1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]))
    assert torch.allclose(x[2], torch.full((4, 5), -IMAGENET_MEAN[2] / IMAGENET_STD[2]))
    batch = imagenet_normalize(np.stack([rgb, rgb]), size=8)
    assert batch.shape == (2, 3, 8, 8)
    with pytest.raises(ContractError):
        imagenet_normalize(rgb.astype(np.float32))


def test_btf_pool() -> None:
    maps = [torch.ones(1, 2, 28, 28), torch.arange(14 * 14.0).reshape(1, 1, 14, 14)]
    out = btf_pool(maps)
    assert out.shape == (1, 3, 28, 28)
    assert torch.allclose(out[:, :2], torch.ones(1, 2, 28, 28))
    # 3x3 average of a linear ramp = its centre value; adaptive pooling 12 -> 28 keeps the range
    assert out[0, 2].min() == pytest.approx(15.0) and out[0, 2].max() == pytest.approx(180.0)
