"""Models: shapes, parameter counts, width scaling, parameter-budget width."""

from __future__ import annotations

import pytest
import torch

from stgmtl.models import ResNet18, SmallCNN, WideCNN, build_model, model_factory
from stgmtl.specialise import count_parameters, width_for_budget


@pytest.mark.parametrize("name", ["cnn", "wide-cnn", "resnet18"])
def test_output_shape(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_tasks=7, width=0.25).eval()
    out = model(torch.randn(3, 3, 32, 32))
    assert out.shape == (3, 7) and torch.isfinite(out).all()


def test_small_cnn_matches_stgmtl_layout() -> None:
    m = SmallCNN(100)
    convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
    linears = [c for c in m.modules() if isinstance(c, torch.nn.Linear)]
    assert [c.out_channels for c in convs] == [32, 64, 64]
    assert [c.kernel_size for c in convs] == [(5, 5), (3, 3), (3, 3)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(3136, 128), (128, 100)]
    # hand count: convs + BN affine + linears
    expected = (3 * 25 * 32 + 32) + (32 * 9 * 64 + 64) + (64 * 9 * 64 + 64) + 2 * (32 + 64 + 64)
    expected += 3136 * 128 + 128 + 128 * 100 + 100
    assert count_parameters(m) == expected


def test_wide_cnn_layout() -> None:
    m = WideCNN(100)
    convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
    linears = [c for c in m.modules() if isinstance(c, torch.nn.Linear)]
    assert [c.out_channels for c in convs] == [32, 64, 128]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert sum(isinstance(x, torch.nn.MaxPool2d) for x in m.modules()) == 3
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(2048, 256), (256, 100)]
    expected = (3 * 9 * 32 + 32) + (32 * 9 * 64 + 64) + (64 * 9 * 128 + 128) + 2 * (32 + 64 + 128)
    expected += 2048 * 256 + 256 + 256 * 100 + 100
    assert count_parameters(m) == expected
    half = WideCNN(10, width=0.5)
    half_convs = [c for c in half.modules() if isinstance(c, torch.nn.Conv2d)]
    assert [c.out_channels for c in half_convs] == [16, 32, 64]


def test_resnet18_is_the_cifar_variant() -> None:
    m = ResNet18(10)
    assert m.stem[0].kernel_size == (3, 3) and m.stem[0].stride == (1, 1)
    assert not any(isinstance(x, torch.nn.MaxPool2d) for x in m.modules())
    assert 11_000_000 < count_parameters(m) < 11_300_000  # the usual ~11.2M CIFAR ResNet-18


@pytest.mark.parametrize("name", ["cnn", "wide-cnn", "resnet18"])
def test_budget_width(name: str) -> None:
    base = 0.25 if name == "resnet18" else 1.0
    one = count_parameters(build_model(name, 20, base))
    w = width_for_budget(model_factory(name), 20, 5, base_width=base)
    five = 5 * count_parameters(build_model(name, 20, w))
    assert five <= one and five > 0.8 * one
    assert width_for_budget(model_factory(name), 20, 1) == 1.0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="name: expected one of"):
        build_model("vgg", 3)
    with pytest.raises(ValueError, match="name: expected one of"):
        model_factory("vgg")
    with pytest.raises(ValueError, match="num_tasks"):
        SmallCNN(0)
    with pytest.raises(ValueError, match="width"):
        ResNet18(3, width=0)
    with pytest.raises(ValueError, match="num_models"):
        width_for_budget(model_factory("cnn"), 3, 0)
