"""Convolutional autoencoder with an exact compression ratio (paper 000, section III-B).

Each device trains an autoencoder on its own images and uploads only the
encoder's latent tensors (section III-A, step 1). Section III-B fixes the
training recipe: Glorot-uniform initialization, mean squared error, RMSprop.
Table I sweeps the compression ratio lambda in {1, 4, 8, 16, 32, 64}.

Exact ratio: the latent tensor holds exactly ``reference_numel / lam``
elements, where ``reference_numel`` is the element count of the input after
zero-padding its height and width up to a multiple of :data:`PAD_MULTIPLE`
(8, the largest downsampling factor used). Inputs whose sides already are
multiples of 8 (3x32x32, 3x256x256, any 3xHxW with H, W multiples of 32) are
not padded, so there lambda is the plain ratio to the raw image. A 1x28x28
MNIST image is padded to 1x32x32 (1024 elements) inside the model: 784 is
not divisible by 32 or 64, so no latent can hold exactly 784/32 elements. At
lambda = 32 an MNIST latent therefore has 32 elements, a ratio of 24.5 to
the raw 784 pixels (:attr:`ConvAutoencoder.raw_ratio`). The padding is the
same for every lambda, so ratios in one sweep are comparable.

Latent layout: the encoder downsamples by ``s`` (2, 4 or 8; stride-2
convolutions) into ``c = C * s**2 / lam`` channels, with ``s`` the smallest
factor that makes ``c`` a whole number. The smallest ``s`` keeps the latent's
spatial extent as large as possible, which the edge CNN's convolutions and
max-pooling (section III-B 2) need. Examples (C x H x W -> latent):
1x28x28: lam 4 -> 1x16x16, 8 -> 2x8x8, 16 -> 1x8x8, 32 -> 2x4x4, 64 -> 1x4x4;
3x256x256: lam 4 -> 3x128x128, 8 -> 6x64x64, 16 -> 3x64x64, 32 -> 6x32x32,
64 -> 3x32x32. lam = 1 uses s = 2 and 4C channels (no compression; the
benchmark's baseline skips the autoencoder and feeds raw images instead).
"""
from __future__ import annotations

import logging
import time
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

#: Compression ratios of Table I.
PAPER_LAMBDAS = (1, 4, 8, 16, 32, 64)
#: Height and width are zero-padded up to a multiple of this (the largest downsampling).
PAD_MULTIPLE = 8
_DOWNSAMPLES = (2, 4, 8)


def _check_shape(in_shape: Sequence[int]) -> Tuple[int, int, int]:
    shape = tuple(int(v) for v in in_shape)
    if len(shape) != 3 or any(v < 1 for v in shape):
        raise ValueError(f"in_shape must be (channels, height, width) of positive ints, got {in_shape!r}")
    return shape  # type: ignore[return-value]


def padded_shape(in_shape: Sequence[int]) -> Tuple[int, int, int]:
    """``in_shape`` with height and width rounded up to a multiple of :data:`PAD_MULTIPLE`."""
    c, h, w = _check_shape(in_shape)
    up = PAD_MULTIPLE
    return c, -(-h // up) * up, -(-w // up) * up


def latent_layout(in_shape: Sequence[int], lam: int) -> Tuple[int, Tuple[int, int, int]]:
    """``(downsampling factor, latent shape)`` for ``in_shape`` at compression ``lam``.

    Raises ``ValueError`` when no factor in (2, 4, 8) gives a whole channel count.
    """
    if isinstance(lam, bool) or not isinstance(lam, int) or lam < 1:
        raise ValueError(f"compression ratio lam must be a positive int, got {lam!r}")
    c, h, w = padded_shape(in_shape)
    for s in _DOWNSAMPLES:
        if (c * s * s) % lam == 0:
            return s, (c * s * s // lam, h // s, w // s)
    raise ValueError(
        f"lam={lam} cannot be met exactly for {c} input channels with downsampling "
        f"{_DOWNSAMPLES}; use one of {PAPER_LAMBDAS}"
    )


def glorot_init(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases on every conv / linear layer
    (section III-B 1; also Keras' default, which the paper used)."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class ConvAutoencoder(nn.Module):
    """Encoder/decoder pair whose latent has exactly 1/``lam`` of the padded input.

    ``in_shape`` is (C, H, W) of one image with values in [0, 1]; ``width`` is
    the channel count of the first encoder stage (later stages use 2x width).
    The latent and the reconstruction are linear (no activation); the MSE
    keeps reconstructions close to [0, 1].
    """

    def __init__(self, in_shape: Sequence[int], lam: int, width: int = 16) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.in_shape = _check_shape(in_shape)
        self.lam = lam
        self.padded_shape = padded_shape(self.in_shape)
        self.downsample, self.latent_shape = latent_layout(self.in_shape, lam)
        c_in, h, w = self.in_shape
        _, hp, wp = self.padded_shape
        top, left = (hp - h) // 2, (wp - w) // 2
        # F.pad order for the last two dims: (left, right, top, bottom).
        self._pad = (left, wp - w - left, top, hp - h - top)

        # One stride-2 convolution per halving; the decoder mirrors it with
        # transposed convolutions, so the full-resolution layers stay narrow
        # (cheap enough to train on a Raspberry Pi-class CPU).
        stages = {2: 1, 4: 2, 8: 3}[self.downsample]
        widths = [width * min(2 ** i, 2) for i in range(stages)]
        enc: List[nn.Module] = []
        prev = c_in
        for wd in widths:
            enc += [nn.Conv2d(prev, wd, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            prev = wd
        enc.append(nn.Conv2d(prev, self.latent_shape[0], 3, padding=1))
        self.encoder = nn.Sequential(*enc)

        dec: List[nn.Module] = [nn.Conv2d(self.latent_shape[0], prev, 3, padding=1),
                                nn.ReLU(inplace=True)]
        for wd in list(reversed(widths))[1:] + [c_in]:
            dec += [nn.ConvTranspose2d(prev, wd, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
            prev = wd
        # Linear output, no sigmoid: with a sigmoid, RMSprop's large early steps
        # drove every output to 0 within an epoch on MNIST (mostly 0 pixels),
        # the sigmoid saturated and training stalled at MSE = mean(x^2).
        dec.pop()
        self.decoder = nn.Sequential(*dec)
        glorot_init(self)

    @property
    def reference_numel(self) -> int:
        """Elements of one padded input; ``latent_numel * lam`` equals it exactly."""
        c, h, w = self.padded_shape
        return c * h * w

    @property
    def latent_numel(self) -> int:
        c, h, w = self.latent_shape
        return c * h * w

    @property
    def raw_ratio(self) -> float:
        """Raw (unpadded) input elements per latent element (24.5 for MNIST at lam 32)."""
        c, h, w = self.in_shape
        return c * h * w / self.latent_numel

    def _check_input(self, x: torch.Tensor, shape: Tuple[int, int, int], what: str) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != shape:
            raise ValueError(f"{what} must be N x {shape[0]} x {shape[1]} x {shape[2]}, "
                             f"got {tuple(x.shape)}")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images N x C x H x W -> latents N x ``latent_shape``."""
        self._check_input(x, self.in_shape, "input")
        if any(self._pad):
            x = F.pad(x, self._pad)
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> reconstructions cropped back to ``in_shape``."""
        self._check_input(z, self.latent_shape, "latent")
        out = self.decoder(z)
        left, _, top, _ = self._pad
        _, h, w = self.in_shape
        return out[:, :, top:top + h, left:left + w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


Batches = Union[torch.Tensor, Iterable]


def _batches(data: Batches, batch_size: int, generator: Optional[torch.Generator]) -> Iterable:
    """Mini-batches of images from a tensor (shuffled) or from a loader / iterable;
    a batch that is a tuple or list contributes its first item (images, labels)."""
    if isinstance(data, torch.Tensor):
        order = torch.randperm(data.shape[0], generator=generator)
        for i in range(0, data.shape[0], batch_size):
            yield data[order[i:i + batch_size]]
        return
    for batch in data:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


def train_autoencoder(model: ConvAutoencoder, data: Batches, epochs: int, lr: float = 1e-3,
                      batch_size: int = 64, seed: Optional[int] = None) -> List[float]:
    """Train ``model`` to reconstruct ``data`` (MSE, RMSprop; section III-B 1).

    ``data`` is an N x C x H x W tensor (shuffled each epoch, ``batch_size``
    per step) or a DataLoader / iterable of batches. RMSprop uses Keras'
    defaults (rho 0.9, eps 1e-7) because the paper trained with Keras.
    Returns the mean per-sample loss of each epoch.
    """
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"need epochs >= 0 and batch_size >= 1, got {epochs}, {batch_size}")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    opt = torch.optim.RMSprop(model.parameters(), lr=lr, alpha=0.9, eps=1e-7)
    losses: List[float] = []
    model.train()
    for epoch in range(epochs):
        total, count, t0 = 0.0, 0, time.perf_counter()
        for x in _batches(data, batch_size, gen):
            opt.zero_grad()
            loss = F.mse_loss(model(x), x)
            loss.backward()
            opt.step()
            total += loss.item() * x.shape[0]
            count += x.shape[0]
        if count == 0:
            raise ValueError("no training images")
        losses.append(total / count)
        logger.debug("autoencoder lam=%s epoch %d: mse %.5f (%.1f s)", model.lam, epoch + 1,
                     losses[-1], time.perf_counter() - t0)
    model.eval()
    return losses


def encode_all(model: ConvAutoencoder, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Latents of all ``images`` (inference mode, in batches): what a device uploads."""
    model.eval()
    with torch.no_grad():
        parts = [model.encode(images[i:i + batch_size]) for i in range(0, images.shape[0], batch_size)]
    if not parts:
        return images.new_zeros((0,) + tuple(model.latent_shape))
    return torch.cat(parts)
