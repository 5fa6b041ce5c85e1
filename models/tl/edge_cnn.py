"""The edge CNN that classifies uploaded latent tensors (paper 000, section III-B 2).

The edge server trains it on the latents and labels the devices upload, with
cross-entropy, Adam and data augmentation, and a softmax output (section
III-B 2). The paper does not give the layers beyond "convolution, max-pooling
and fully connected"; :class:`EdgeCNN` adapts the same recipe to any input
shape, so the lam = 1 baseline (raw images) and every latent shape of Table I
use one architecture:

- up to three blocks of 3x3 convolution + ReLU + 2x2 max-pooling (16, 32, 64
  filters), as many as keep the feature map at least 2x2; an input smaller
  than 4x4 gets one convolution and no pooling;
- a fully connected hidden layer (ReLU, dropout) and a linear output layer.

Smaller latents thus get fewer pooling blocks and a smaller dense layer,
which is why the parameter count falls with lam as in Table I.

The model standardizes its input per channel with statistics stored as
buffers (set from the training data by :func:`train_classifier`), so latents
of any scale train alike and the broadcast model (step 5 of section III-A)
carries its own normalization.

Augmentation (section III-B 2 says only "data augmentation"): image flips
and rotations mean nothing in a latent space, so each training batch gets
(a) a random translation of up to ``max_shift`` cells per axis with edge
replication (default: a tenth of the smaller side, so 2 pixels on 28x28,
1 cell on 16x16, none on 8x8 or smaller where one cell is too coarse), and
(b) Gaussian noise of ``noise_std`` times each channel's standard deviation.
"""
from __future__ import annotations

import logging
import time
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .autoencoder import glorot_init

logger = logging.getLogger(__name__)

CONV_WIDTHS = (16, 32, 64)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (Table I's "model parameters")."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class EdgeCNN(nn.Module):
    """Conv / max-pool / dense classifier for inputs of shape ``input_shape`` (C, H, W)."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, hidden: int = 128,
                 dropout: float = 0.3) -> None:
        super().__init__()
        shape = tuple(int(v) for v in input_shape)
        if len(shape) != 3 or any(v < 1 for v in shape):
            raise ValueError(f"input_shape must be (channels, height, width) of positive ints, "
                             f"got {input_shape!r}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.input_shape: Tuple[int, int, int] = shape  # type: ignore[assignment]
        self.num_classes = num_classes
        c, h, w = shape
        layers: List[nn.Module] = []
        prev = c
        for width in CONV_WIDTHS:
            if min(h, w) < 4:  # pooling again would leave less than 2x2
                break
            layers += [nn.Conv2d(prev, width, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            prev, h, w = width, h // 2, w // 2
        if not layers:
            layers += [nn.Conv2d(prev, CONV_WIDTHS[0], 3, padding=1), nn.ReLU(inplace=True)]
            prev = CONV_WIDTHS[0]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(prev * h * w, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, num_classes))
        self.register_buffer("input_mean", torch.zeros(1, c, 1, 1))
        self.register_buffer("input_std", torch.ones(1, c, 1, 1))
        glorot_init(self)

    def set_input_stats(self, inputs: torch.Tensor) -> None:
        """Store per-channel mean and standard deviation of ``inputs`` (N x C x H x W)."""
        self._check(inputs)
        with torch.no_grad():
            mean = inputs.mean(dim=(0, 2, 3), keepdim=True)
            std = inputs.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        self.input_mean.copy_(mean)
        self.input_std.copy_(std)

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"input must be N x {' x '.join(map(str, self.input_shape))}, "
                             f"got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits; softmax (section III-B 2) is folded into the cross-entropy loss."""
        self._check(x)
        return self.classifier(self.features((x - self.input_mean) / self.input_std))


def default_max_shift(shape: Sequence[int]) -> int:
    """Translation range for augmentation: a tenth of the smaller spatial side."""
    return min(int(shape[-2]), int(shape[-1])) // 10


def augment(x: torch.Tensor, max_shift: int, noise_std: float, channel_std: torch.Tensor,
            generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Random per-sample translation (edge-replicated) plus per-channel Gaussian noise."""
    n, c, h, w = x.shape
    if max_shift > 0:
        m = max_shift
        padded = F.pad(x, (m, m, m, m), mode="replicate")
        dy = torch.randint(0, 2 * m + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * m + 1, (n,), generator=generator)
        # Crop an h x w window at (dy, dx) from each padded sample with two gathers.
        rows = (torch.arange(h)[None, :] + dy[:, None]).view(n, 1, h, 1).expand(n, c, h, w + 2 * m)
        x = padded.gather(2, rows)
        cols = (torch.arange(w)[None, :] + dx[:, None]).view(n, 1, 1, w).expand(n, c, h, w)
        x = x.gather(3, cols)
    if noise_std > 0:
        x = x + torch.randn(x.shape, generator=generator) * (noise_std * channel_std)
    return x


def train_classifier(model: EdgeCNN, inputs: torch.Tensor, labels: torch.Tensor, epochs: int,
                     lr: float = 1e-3, batch_size: int = 64, augmentation: bool = True,
                     max_shift: Optional[int] = None, noise_std: float = 0.05,
                     seed: Optional[int] = None) -> List[float]:
    """Train ``model`` on ``inputs`` (N x C x H x W latents or images) and int64 ``labels``.

    Adam (Keras defaults: lr 1e-3, eps 1e-7) and cross-entropy (section III-B 2);
    augmentation as in the module docstring unless ``augmentation`` is false
    (``max_shift`` defaults to :func:`default_max_shift`). The input statistics
    are (re)set from ``inputs`` first. Returns the mean loss of each epoch.
    """
    if inputs.shape[0] != labels.shape[0] or inputs.shape[0] == 0:
        raise ValueError(f"need as many labels as inputs (> 0), got {inputs.shape[0]} inputs "
                         f"and {labels.shape[0]} labels")
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"need epochs >= 0 and batch_size >= 1, got {epochs}, {batch_size}")
    labels = labels.long()
    if int(labels.min()) < 0 or int(labels.max()) >= model.num_classes:
        raise ValueError(f"labels must lie in [0, {model.num_classes}), got "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    model.set_input_stats(inputs)
    shift = default_max_shift(model.input_shape) if max_shift is None else max_shift
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    opt = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-7)
    losses: List[float] = []
    for epoch in range(epochs):
        model.train()
        total, t0 = 0.0, time.perf_counter()
        order = torch.randperm(inputs.shape[0], generator=gen)
        for i in range(0, inputs.shape[0], batch_size):
            idx = order[i:i + batch_size]
            x = inputs[idx]
            if augmentation:
                x = augment(x, shift, noise_std, model.input_std, gen)
            opt.zero_grad()
            loss = F.cross_entropy(model(x), labels[idx])
            loss.backward()
            opt.step()
            total += loss.item() * idx.shape[0]
        losses.append(total / inputs.shape[0])
        logger.debug("edge CNN epoch %d: loss %.4f (%.1f s)", epoch + 1, losses[-1],
                     time.perf_counter() - t0)
    model.eval()
    return losses


def predict(model: EdgeCNN, inputs: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Predicted class of each input (inference mode, in batches)."""
    model.eval()
    with torch.no_grad():
        parts = [model(inputs[i:i + batch_size]).argmax(1) for i in range(0, inputs.shape[0], batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def evaluate(model: EdgeCNN, inputs: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 256) -> Tuple[float, float]:
    """``(accuracy in [0, 1], seconds)`` of classifying all ``inputs``: Table I's
    inference accuracy and testing time (wall clock, ``time.perf_counter``)."""
    if inputs.shape[0] != labels.shape[0] or inputs.shape[0] == 0:
        raise ValueError(f"need as many labels as inputs (> 0), got {inputs.shape[0]} inputs "
                         f"and {labels.shape[0]} labels")
    t0 = time.perf_counter()
    pred = predict(model, inputs, batch_size)
    seconds = time.perf_counter() - t0
    return float((pred == labels.long()).float().mean()), seconds
