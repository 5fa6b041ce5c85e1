"""Light and heavy DNNs of one structure and different depth (Section III-A of Zhang et al.,
"Deep Reinforcement Learning Based Resource Management for DNN Inference in Industrial IoT":
"both levels' DNN models have the same neural network structure ... yet are with different
number of hidden layers").

:class:`DigitNet` is a plain convolutional network: ``depth`` blocks of 3 x 3
convolution (``width`` channels) + ReLU, the first two followed by 2 x 2
max-pooling, then adaptive average pooling to ``pooled`` x ``pooled``, one
hidden fully connected layer and the output layer. Light (n = 0) and heavy
(n = 1) differ only in ``depth``; the head is the same size for both, so the
heavy model's extra bytes and work are its extra convolutions (S^0 < S^1 and
Q^0 < Q^1 of Table II). One convolution sees only a 3 x 3 patch before the
pooled head, so the light model is weaker by construction, not by chance:
the paper's order P_UL < P_UH holds with a margin (see the tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

LIGHT, HEAVY = 0, 1
LEVEL_NAMES = {LIGHT: "light", HEAVY: "heavy"}


@dataclass(frozen=True)
class NetConfig:
    """Structure of one level: ``depth`` convolutions of ``width`` channels, a head of
    ``hidden`` units after pooling to ``pooled`` x ``pooled``."""

    depth: int
    width: int
    hidden: int
    pooled: int = 3

    def __post_init__(self) -> None:
        for name in ("depth", "width", "hidden", "pooled"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"NetConfig.{name} must be >= 1, got {getattr(self, name)}")


class DigitNet(nn.Module):
    """The network family of the module docstring, for 1 x 28 x 28 inputs in [0, 1]."""

    def __init__(self, config: NetConfig, classes: int):
        super().__init__()
        if classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {classes}")
        self.config = config
        layers = []
        channels = 1
        for j in range(config.depth):
            layers += [nn.Conv2d(channels, config.width, 3, padding=1), nn.ReLU(inplace=True)]
            if j < 2:  # 28 -> 14 -> 7: deeper blocks work on 7 x 7 maps
                layers.append(nn.MaxPool2d(2))
            channels = config.width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(config.pooled)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(config.width * config.pooled * config.pooled, config.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(config.hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Centre the [0, 1] pixels on the fly (MNIST's mean and std): the
        # model carries its own normalization, so a device feeds raw views.
        return self.head(self.pool(self.features((x - 0.1307) / 0.3081)))


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
