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

from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = [
    "MODEL_NAMES",
    "SPLITS",
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


def _small_lower(width: float) -> tuple[list[nn.Module], int]:
    """:class:`SmallCNN`'s first two conv layers (32x32 -> 14x14) and their output channels."""
    c1, c2 = _scaled(32, width), _scaled(64, width)
    layers = [
        nn.Conv2d(3, c1, kernel_size=5),
        nn.BatchNorm2d(c1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, kernel_size=3, padding=1),
        nn.BatchNorm2d(c2),
        nn.ReLU(inplace=True),
    ]
    return layers, c2


def _small_upper(in_ch: int, width: float) -> tuple[list[nn.Module], int]:
    """:class:`SmallCNN`'s third conv layer, pooling and flatten; the flattened size."""
    c3 = _scaled(64, width)
    layers = [
        nn.Conv2d(in_ch, c3, kernel_size=3, padding=1),
        nn.BatchNorm2d(c3),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
    ]
    return layers, c3 * 7 * 7


def _small_features(width: float) -> tuple[nn.Sequential, int]:
    """:class:`SmallCNN`'s convolutional trunk and its flattened output size."""
    lower, c2 = _small_lower(width)
    upper, n = _small_upper(c2, width)
    return nn.Sequential(*lower, *upper), n


def _wide_block(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    ]


def _wide_lower(width: float) -> tuple[list[nn.Module], int]:
    """:class:`WideCNN`'s first two conv blocks (32x32 -> 8x8) and their output channels."""
    c1, c2 = _scaled(32, width), _scaled(64, width)
    return _wide_block(3, c1) + _wide_block(c1, c2), c2


def _wide_upper(in_ch: int, width: float) -> tuple[list[nn.Module], int]:
    """:class:`WideCNN`'s third conv block and flatten (8x8 -> 4x4); the flattened size."""
    c3 = _scaled(128, width)
    return [*_wide_block(in_ch, c3), nn.Flatten()], c3 * 4 * 4


def _wide_features(width: float) -> tuple[nn.Sequential, int]:
    """:class:`WideCNN`'s three conv blocks (32x32 -> 4x4) and its flattened output size."""
    lower, c2 = _wide_lower(width)
    upper, n = _wide_upper(c2, width)
    return nn.Sequential(*lower, *upper), n


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


def _resnet_stem(width: float) -> nn.Sequential:
    c0 = _scaled(64, width)
    return nn.Sequential(
        nn.Conv2d(3, c0, 3, padding=1, bias=False), nn.BatchNorm2d(c0), nn.ReLU(inplace=True)
    )


def _resnet_stages(in_ch: int, channels: Sequence[int], first: int) -> tuple[list[nn.Module], int]:
    """Stages of two basic blocks (stage ``first`` onwards, numbered from 0); output channels."""
    layers: list[nn.Module] = []
    for i, out_ch in enumerate(channels, start=first):
        layers += [_BasicBlock(in_ch, out_ch, 1 if i == 0 else 2), _BasicBlock(out_ch, out_ch, 1)]
        in_ch = out_ch
    return layers, in_ch


def _resnet_trunk(width: float, stages: int = 3) -> tuple[nn.Sequential, int]:
    """ResNet-18's stem and its first ``stages`` stages (as :class:`ResNet18` builds them);
    output channels."""
    chans = [_scaled(c, width) for c in (64, 128, 256, 512)[:stages]]
    stem = _resnet_stem(width)  # built first: the same initial weights as ResNet18 per seed
    layers, out = _resnet_stages(_scaled(64, width), chans, 0)
    return nn.Sequential(stem, *layers), out


def _resnet_branch(
    in_ch: int, num_tasks: int, branch_width: float, stages: int = 3
) -> nn.Sequential:
    """ResNet-18's stages after the first ``stages`` (stage 4 by default), global pooling and
    the linear head."""
    chans = [_scaled(c, branch_width) for c in (64, 128, 256, 512)[stages:]]
    layers, out_ch = _resnet_stages(in_ch, chans, stages)
    return nn.Sequential(
        *layers,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(out_ch, num_tasks),
    )


#: Where a shipped model splits into a shared trunk and per-group branches (:class:`CNNFactory`).
SPLITS = ("late", "early")


class CNNFactory:
    """``factory(num_tasks, width)`` for one of the models, also buildable as trunk + branch.

    Implements :class:`stgmtl.specialise.TrunkBranchFactory`: ``factory(T, w)`` is the whole
    model (:func:`build_model`), ``factory.trunk(w)`` its shared lower layers and
    ``factory.branch(T, w, bw)`` the upper layers and heads on ``trunk(w)``'s output, with the
    branch's own layers scaled by ``bw``; ``trunk(w)`` followed by ``branch(T, w, w)`` has
    exactly the layers and parameter count of ``factory(T, w)``, at either split point.
    Instances pickle (for process pools) and compare and print by model name and split
    (``cache_id``), so caches can key on them.

    Parameters
    ----------
    name : {"cnn", "wide-cnn", "resnet18"}
    split : {"late", "early"}
        Where the trunk ends. ``"late"``: the CNNs' branch is the two-layer MLP head (the trunk
        is every convolution, to the flattened features), ResNet-18's branch is stage 4 with
        pooling and the linear layer. ``"early"``: one block earlier: the CNNs' last conv
        layer (block) joins the branch, and ResNet-18's stage 3. An earlier split gives each
        branch more of the network to specialise and, at the same parameter budget, a larger
        branch width (the moved block is small, the first branch layer after it shrinks with
        the branch width; :func:`stgmtl.specialise.branch_width_for_budget`), at more
        multiply-adds per image than one model (each branch convolves the trunk's feature map).
    """

    def __init__(self, name: str, split: str = "late") -> None:
        if name not in _BUILDERS:
            raise ValueError(f"name: expected one of {MODEL_NAMES}, got {name!r}")
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
        self.name = name
        self.split = split

    @property
    def cache_id(self) -> str:
        """A stable identity of the architecture, for run caches."""
        at = "" if self.split == "late" else f", split={self.split!r}"
        # ResNet-18's trunk + branch draw the one model's initial weights since 0.3 (build 2)
        build = "#build2" if self.name == "resnet18" else ""
        return f"stgmtl.models.model_factory({self.name!r}{at}){build}"

    def with_split(self, split: str) -> CNNFactory:
        """The same model split into trunk and branch at ``split`` (see :data:`SPLITS`)."""
        return CNNFactory(self.name, split)

    def __call__(self, num_tasks: int, width: float = 1.0) -> nn.Module:
        return build_model(self.name, num_tasks, width)

    def trunk(self, width: float) -> nn.Module:
        """The shared lower layers at ``width`` (see the class docstring)."""
        _check_common(1, width)
        early = self.split == "early"
        if self.name == "resnet18":
            return _resnet_trunk(width, 2 if early else 3)[0]
        if not early:
            return (_small_features if self.name == "cnn" else _wide_features)(width)[0]
        return nn.Sequential(*(_small_lower if self.name == "cnn" else _wide_lower)(width)[0])

    def branch(self, num_tasks: int, width: float, branch_width: float) -> nn.Module:
        """Upper layers and ``num_tasks`` logits on the output of ``trunk(width)``."""
        _check_common(num_tasks, width)
        _check_common(num_tasks, branch_width)
        early = self.split == "early"
        if self.name == "resnet18":
            stages = 2 if early else 3
            trunk_out = _scaled((64, 128, 256, 512)[stages - 1], width)  # without building it
            return _resnet_branch(trunk_out, num_tasks, branch_width, stages)
        cnn = self.name == "cnn"
        hidden, dropout = (
            (_scaled(128, branch_width), 0.2) if cnn else (_scaled(256, branch_width), 0.0)
        )
        if not early:
            n_in = _scaled(64, width) * 7 * 7 if cnn else _scaled(128, width) * 4 * 4
            return _mlp_head(n_in, hidden, num_tasks, dropout)
        in_ch = _scaled(64, width)  # the trunk's output channels (conv 2 / block 2)
        conv, n_in = (_small_upper if cnn else _wide_upper)(in_ch, branch_width)
        return nn.Sequential(*conv, *_mlp_head(n_in, hidden, num_tasks, dropout))

    def __repr__(self) -> str:
        at = "" if self.split == "late" else f", split={self.split!r}"
        return f"model_factory({self.name!r}{at})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, CNNFactory) and other.name == self.name and other.split == self.split
        )

    def __hash__(self) -> int:
        return hash(("CNNFactory", self.name, self.split))


def model_factory(name: str, split: str = "late") -> CNNFactory:
    """``factory(num_tasks, width)`` building model ``name``, for grouped training.

    Parameters
    ----------
    name : {"cnn", "wide-cnn", "resnet18"}
    split : {"late", "early"}
        Where ``trunk()`` ends for the shared-trunk architecture (see :class:`CNNFactory`).

    Returns
    -------
    CNNFactory
        Callable as ``factory(num_tasks, width)`` (= :func:`build_model`), with ``trunk`` and
        ``branch`` for the shared-trunk architecture.
    """
    return CNNFactory(name, split)
