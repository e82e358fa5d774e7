"""Plain-torch models for the CIFAR task suites: STG-MTL's small CNN, a wider 3-block CNN and a
CIFAR ResNet-18.

All output one logit per task, shape ``(batch, num_tasks)``, for ``BCEWithLogitsLoss``.
All take a ``width`` multiplier that scales every channel count (and the CNN's hidden layer),
so that ``k`` group models can be given about the parameters of one baseline model
(:func:`stgmtl.specialise.width_for_budget` with ``model_factory(name)``). These models are one
user of the grouped-training API; the core never imports them.

Every model is also built in two parts, a shared *trunk* and a *branch* (the upper layers and
the task heads), for the shared-trunk grouped architecture
(:class:`stgmtl.specialise.BranchedModel`): :func:`model_factory` returns a
:class:`CNNFactory`, which implements :class:`stgmtl.specialise.TrunkBranchFactory`. The split:
the CNNs' trunk is the convolutional feature extractor and the branch is the two-layer MLP head;
ResNet-18's trunk is the stem and stages 1-3 and the branch is stage 4, pooling and the linear
head.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "MODEL_NAMES",
    "CNNFactory",
    "ResNet18",
    "SmallCNN",
    "WideCNN",
    "build_model",
    "model_factory",
]

MODEL_NAMES = ("cnn", "wide-cnn", "resnet18")


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def _check_common(num_tasks: int, width: float) -> None:
    if not isinstance(num_tasks, int) or num_tasks < 1:
        raise ValueError(f"num_tasks: expected a positive int, got {num_tasks!r}")
    if not width > 0:
        raise ValueError(f"width: expected a number > 0, got {width!r}")


def _mlp_head(in_features: int, hidden: int, num_tasks: int, dropout: float) -> nn.Sequential:
    """Dropout, linear, ReLU, dropout, linear: the two-layer head of the CNNs."""
    return nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(in_features, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_tasks),
    )


def _small_features(width: float) -> tuple[nn.Sequential, int]:
    """:class:`SmallCNN`'s convolutional trunk and its flattened output size."""
    c1, c2, c3 = _scaled(32, width), _scaled(64, width), _scaled(64, width)
    features = nn.Sequential(
        nn.Conv2d(3, c1, kernel_size=5),
        nn.BatchNorm2d(c1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, kernel_size=3, padding=1),
        nn.BatchNorm2d(c2),
        nn.ReLU(inplace=True),
        nn.Conv2d(c2, c3, kernel_size=3, padding=1),
        nn.BatchNorm2d(c3),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
    )
    return features, c3 * 7 * 7


def _wide_features(width: float) -> tuple[nn.Sequential, int]:
    """:class:`WideCNN`'s three conv blocks (32x32 -> 4x4) and its flattened output size."""
    blocks: list[nn.Module] = []
    in_ch = 3
    for out_ch in (_scaled(c, width) for c in (32, 64, 128)):
        blocks += [
            nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        in_ch = out_ch
    return nn.Sequential(*blocks, nn.Flatten()), in_ch * 4 * 4


class SmallCNN(nn.Module):
    """STG-MTL's small CNN for 32x32 RGB images: 3 conv layers and 2 linear layers.

    Layout (width 1.0, as in the official STG-MTL code): conv 5x5 3->32, BN, ReLU, maxpool 2;
    conv 3x3 32->64 (pad 1), BN, ReLU; conv 3x3 64->64 (pad 1), BN, ReLU, maxpool 2; flatten
    (64 x 7 x 7); dropout; linear -> 128; ReLU; dropout; linear -> ``num_tasks`` logits.

    Parameters
    ----------
    num_tasks : int
        Number of output logits (one per binary task).
    width : float, default 1.0
        Multiplier on every channel count and on the hidden layer size.
    dropout : float, default 0.2
        Dropout probability before each linear layer.
    """

    def __init__(self, num_tasks: int, width: float = 1.0, dropout: float = 0.2) -> None:
        super().__init__()
        _check_common(num_tasks, width)
        self.num_tasks = num_tasks
        self.width = width
        self.features, n_features = _small_features(width)
        self.head = _mlp_head(n_features, _scaled(128, width), num_tasks, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(batch, num_tasks)`` for images ``(batch, 3, 32, 32)``."""
        return self.head(self.features(x))


class WideCNN(nn.Module):
    """A 3-block CNN for 32x32 RGB images that learns CIFAR-100 faster than :class:`SmallCNN`.

    Layout (width 1.0): three blocks of conv 3x3 (pad 1), BN, ReLU, maxpool 2 with 32, 64 and
    128 channels (32x32 -> 4x4); flatten (128 x 4 x 4); linear -> 256; ReLU; linear ->
    ``num_tasks`` logits. No dropout by default. About the compute of :class:`SmallCNN` (1.2x
    its training step time on CPU) with 1.4x its parameters; with a one-cycle learning rate it
    reaches a clearly better 5-epoch multi-task model on CIFAR-100, whose data maps group the
    tasks closer to the superclasses (see the README's demo figures).

    Parameters
    ----------
    num_tasks : int
        Number of output logits (one per binary task).
    width : float, default 1.0
        Multiplier on every channel count and on the hidden layer size.
    dropout : float, default 0.0
        Dropout probability before each linear layer.
    """

    def __init__(self, num_tasks: int, width: float = 1.0, dropout: float = 0.0) -> None:
        super().__init__()
        _check_common(num_tasks, width)
        self.num_tasks = num_tasks
        self.width = width
        self.features, n_features = _wide_features(width)
        self.head = _mlp_head(n_features, _scaled(256, width), num_tasks, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(batch, num_tasks)`` for images ``(batch, 3, 32, 32)``."""
        return self.head(self.features(x))


class _BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for 32x32 images (CIFAR variant: 3x3 stem, stride 1, no max-pool).

    Four stages of two basic blocks with ``64, 128, 256, 512`` channels (times ``width``),
    global average pooling and one linear layer to ``num_tasks`` logits.

    Parameters
    ----------
    num_tasks : int
        Number of output logits.
    width : float, default 1.0
        Multiplier on every channel count (0.25 gives 16-32-64-128).
    """

    def __init__(self, num_tasks: int, width: float = 1.0) -> None:
        super().__init__()
        _check_common(num_tasks, width)
        chans = [_scaled(c, width) for c in (64, 128, 256, 512)]
        self.num_tasks = num_tasks
        self.width = width
        self.stem = nn.Sequential(
            nn.Conv2d(3, chans[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(chans[0]),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        in_ch = chans[0]
        for i, out_ch in enumerate(chans):
            stride = 1 if i == 0 else 2
            layers += [_BasicBlock(in_ch, out_ch, stride), _BasicBlock(out_ch, out_ch, 1)]
            in_ch = out_ch
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_tasks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(batch, num_tasks)`` for images ``(batch, 3, 32, 32)``."""
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "cnn": SmallCNN,
    "wide-cnn": WideCNN,
    "resnet18": ResNet18,
}


def build_model(name: str, num_tasks: int, width: float = 1.0) -> nn.Module:
    """Build a model by name.

    Parameters
    ----------
    name : {"cnn", "wide-cnn", "resnet18"}
        ``"cnn"`` is :class:`SmallCNN`, ``"wide-cnn"`` is :class:`WideCNN`, ``"resnet18"`` is
        :class:`ResNet18`.
    num_tasks : int
        Number of output logits.
    width : float, default 1.0
        Channel multiplier.

    Returns
    -------
    torch.nn.Module
    """
    if name not in _BUILDERS:
        raise ValueError(f"name: expected one of {MODEL_NAMES}, got {name!r}")
    return _BUILDERS[name](num_tasks=num_tasks, width=width)


def _resnet_trunk(width: float) -> tuple[nn.Sequential, int]:
    """ResNet-18's stem and stages 1-3 (as :class:`ResNet18` builds them); output channels."""
    chans = [_scaled(c, width) for c in (64, 128, 256)]
    stem = nn.Sequential(
        nn.Conv2d(3, chans[0], 3, padding=1, bias=False),
        nn.BatchNorm2d(chans[0]),
        nn.ReLU(inplace=True),
    )
    layers: list[nn.Module] = [stem]
    in_ch = chans[0]
    for i, out_ch in enumerate(chans):
        layers += [_BasicBlock(in_ch, out_ch, 1 if i == 0 else 2), _BasicBlock(out_ch, out_ch, 1)]
        in_ch = out_ch
    return nn.Sequential(*layers), in_ch


def _resnet_branch(in_ch: int, num_tasks: int, branch_width: float) -> nn.Sequential:
    """ResNet-18's stage 4 (two basic blocks), global pooling and linear head."""
    out_ch = _scaled(512, branch_width)
    return nn.Sequential(
        _BasicBlock(in_ch, out_ch, 2),
        _BasicBlock(out_ch, out_ch, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(out_ch, num_tasks),
    )


class CNNFactory:
    """``factory(num_tasks, width)`` for one of the models, also buildable as trunk + branch.

    Implements :class:`stgmtl.specialise.TrunkBranchFactory`: ``factory(T, w)`` is the whole
    model (:func:`build_model`), ``factory.trunk(w)`` its shared lower layers (images -> a
    flat feature vector for the CNNs, a feature map for ResNet-18) and ``factory.branch(T, w,
    bw)`` the upper layers and heads on ``trunk(w)``'s output, with the branch's own layers
    scaled by ``bw``; ``trunk(w)`` followed by ``branch(T, w, w)`` has exactly the layers and
    parameter count of ``factory(T, w)``. Instances pickle (for process pools) and compare and
    print by model name (``cache_id``), so caches can key on them.

    Parameters
    ----------
    name : {"cnn", "wide-cnn", "resnet18"}
    """

    def __init__(self, name: str) -> None:
        if name not in _BUILDERS:
            raise ValueError(f"name: expected one of {MODEL_NAMES}, got {name!r}")
        self.name = name

    @property
    def cache_id(self) -> str:
        """A stable identity of the architecture, for run caches."""
        return f"stgmtl.models.model_factory({self.name!r})"

    def __call__(self, num_tasks: int, width: float = 1.0) -> nn.Module:
        return build_model(self.name, num_tasks, width)

    def trunk(self, width: float) -> nn.Module:
        """The shared lower layers at ``width`` (see the class docstring)."""
        _check_common(1, width)
        if self.name == "resnet18":
            return _resnet_trunk(width)[0]
        return (_small_features if self.name == "cnn" else _wide_features)(width)[0]

    def branch(self, num_tasks: int, width: float, branch_width: float) -> nn.Module:
        """Upper layers and ``num_tasks`` logits on the output of ``trunk(width)``."""
        _check_common(num_tasks, width)
        _check_common(num_tasks, branch_width)
        if self.name == "resnet18":
            return _resnet_branch(_resnet_trunk(width)[1], num_tasks, branch_width)
        if self.name == "cnn":
            return _mlp_head(_scaled(64, width) * 7 * 7, _scaled(128, branch_width), num_tasks, 0.2)
        return _mlp_head(_scaled(128, width) * 4 * 4, _scaled(256, branch_width), num_tasks, 0.0)

    def __repr__(self) -> str:
        return f"model_factory({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CNNFactory) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("CNNFactory", self.name))


def model_factory(name: str) -> CNNFactory:
    """``factory(num_tasks, width)`` building model ``name``, for grouped training.

    Parameters
    ----------
    name : {"cnn", "wide-cnn", "resnet18"}

    Returns
    -------
    CNNFactory
        Callable as ``factory(num_tasks, width)`` (= :func:`build_model`), with ``trunk`` and
        ``branch`` for the shared-trunk architecture.
    """
    return CNNFactory(name)
