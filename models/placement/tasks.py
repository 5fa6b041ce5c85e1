"""Inference task types, the noise model and task inputs (Section III-A of Zhang et al.,
"Deep Reinforcement Learning Based Resource Management for DNN Inference in Industrial IoT").

Task types. The paper gives each IIoT device a *dedicated* DNN for its
application. We build them from real digits: a task type is a label function
applied to a view of the image, as different sensors on a production line
would see one part and ask different questions of it:

=========  ===================================  =================================
name       label (classes)                      view of the 28 x 28 digit
=========  ===================================  =================================
digit      the digit (10)                       upright
parity     even / odd (2)                       upright
high       digit >= 5 (2)                       rotated 90 degrees (a sideways camera)
lowres     the digit (10)                       2 x 2 block means (a 14 x 14 sensor)
mod3       digit mod 3 (3)                      mirrored left-right
=========  ===================================  =================================

Every view is again 1 x 28 x 28 in [0, 1], so one network structure serves
every type (only the number of outputs differs).

Noise model (theta = 1, "high-frequency noise" of industrial sites):
on pixels in [0, 1], add i.i.d. Gaussian noise of standard deviation
:data:`NOISE_STD` (0.25), clip to [0, 1], then set each pixel with probability
:data:`SALT_PEPPER_P` (0.08) to 0 or 1 (equally likely: salt and pepper), and
finally quantize to uint8 like the sensor's own output. A noisy task carries as
many bytes as a clean one (Section III-A: "the data size of a task is the same
regardless of theta").

Task inputs. A task of ``D`` bytes (Table IV: D in [40, 60] KB, 1 KB = 1000
bytes here) carries ``D // 784`` real uint8 digits of its view (784 bytes each,
drawn from the held-out split) followed by ``D mod 784`` zero bytes of padding,
so the payload is exactly ``D`` bytes; the model classifies the digits and the
task's accuracy is the fraction it gets right.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

#: Standard deviation of the additive Gaussian part of the noise model (pixels in [0, 1]).
NOISE_STD = 0.25
#: Probability that a pixel is replaced by salt (1) or pepper (0).
SALT_PEPPER_P = 0.08
#: Bytes of one uint8 28 x 28 digit in a task payload.
IMAGE_BYTES = 28 * 28
#: Table IV: task data size D in [40, 60] KB, deadline T^max in [1.5, 2] s; Section V-A: 30 % noisy.
TASK_BYTES_RANGE = (40_000, 60_000)
DEADLINE_S_RANGE = (1.5, 2.0)
NOISY_FRACTION = 0.3
#: The reference task size of inference-time measurements: the middle of Table IV's D range.
REFERENCE_TASK_BYTES = 50_000


def _upright(x: torch.Tensor) -> torch.Tensor:
    return x


def _rot90(x: torch.Tensor) -> torch.Tensor:
    return torch.rot90(x, 1, dims=(-2, -1))


def _mirror(x: torch.Tensor) -> torch.Tensor:
    return torch.flip(x, dims=(-1,))


def _lowres(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")


@dataclass(frozen=True)
class TaskType:
    """One application: a label function of the digit and a view of the image."""

    name: str
    classes: int
    view: str
    description: str

    def labels(self, digits: torch.Tensor) -> torch.Tensor:
        return _LABELS[self.name](digits)

    def transform(self, images: torch.Tensor) -> torch.Tensor:
        """The type's view of ``images`` (N x 1 x 28 x 28 float in [0, 1])."""
        return _VIEWS[self.view](images)


_VIEWS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "upright": _upright,
    "rot90": _rot90,
    "mirror": _mirror,
    "lowres": _lowres,
}
_LABELS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "digit": lambda y: y.clone(),
    "parity": lambda y: y % 2,
    "high": lambda y: (y >= 5).long(),
    "lowres": lambda y: y.clone(),
    "mod3": lambda y: y % 3,
}

TASK_TYPES: Dict[str, TaskType] = {
    t.name: t
    for t in (
        TaskType("digit", 10, "upright", "the digit, upright view"),
        TaskType("parity", 2, "upright", "even or odd, upright view"),
        TaskType("high", 2, "rot90", "digit >= 5, view rotated by 90 degrees"),
        TaskType("lowres", 10, "lowres", "the digit, 14 x 14 sensor (2 x 2 block means)"),
        TaskType("mod3", 3, "mirror", "digit mod 3, mirrored view"),
    )
}
#: The four types used unless a caller names others.
DEFAULT_TASK_TYPES = ("digit", "parity", "high", "lowres")


def task_type(name: str) -> TaskType:
    """The registered task type ``name`` (``ValueError`` naming the known ones otherwise)."""
    try:
        return TASK_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown task type {name!r}; one of {sorted(TASK_TYPES)}") from None


def check_task_types(names: Sequence[str]) -> Tuple[str, ...]:
    names = tuple(names)
    if not names:
        raise ValueError("at least one task type is needed")
    if len(set(names)) != len(names):
        raise ValueError(f"task types repeat: {names}")
    for name in names:
        task_type(name)
    return names


def add_noise(
    images: torch.Tensor,
    generator: torch.Generator,
    noise_std: float = NOISE_STD,
    salt_pepper_p: float = SALT_PEPPER_P,
) -> torch.Tensor:
    """The noise model of the module docstring applied to ``images`` in [0, 1].

    Returns new float images on the uint8 grid (k / 255), as a sensor would deliver them.
    """
    if noise_std < 0 or not 0.0 <= salt_pepper_p <= 1.0:
        raise ValueError(
            f"noise_std must be >= 0 and salt_pepper_p in [0, 1], got {noise_std}, {salt_pepper_p}"
        )
    noisy = images + noise_std * torch.randn(images.shape, generator=generator)
    noisy = noisy.clamp_(0.0, 1.0)
    hit = torch.rand(images.shape, generator=generator) < salt_pepper_p
    salt = torch.rand(images.shape, generator=generator) < 0.5
    noisy = torch.where(hit, salt.to(noisy.dtype), noisy)
    return to_uint8(noisy).float().div_(255.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] to uint8 (round to nearest)."""
    return images.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


@dataclass(frozen=True)
class TaskInput:
    """One task's payload: exactly ``data_bytes`` bytes of which ``images`` are real digits."""

    task_type: str
    data_bytes: int
    noisy: bool
    images: torch.Tensor  # n x 1 x 28 x 28 uint8, the view as the sensor delivers it
    labels: torch.Tensor  # n int64 labels of the task type

    @property
    def padding_bytes(self) -> int:
        return self.data_bytes - self.images.numel()

    def payload(self) -> bytes:
        """The ``data_bytes`` bytes a device sends: the digits then zero padding."""
        return self.images.contiguous().numpy().tobytes() + bytes(self.padding_bytes)

    def model_input(self) -> torch.Tensor:
        """Float input for the networks (n x 1 x 28 x 28 in [0, 1])."""
        return self.images.float().div(255.0)


def images_per_task(data_bytes: int) -> int:
    if data_bytes < IMAGE_BYTES:
        raise ValueError(f"a task needs at least {IMAGE_BYTES} bytes (one digit), got {data_bytes}")
    return int(data_bytes) // IMAGE_BYTES


def make_task_input(
    kind: TaskType,
    images: torch.Tensor,
    labels: torch.Tensor,
    data_bytes: int,
    noisy: bool,
    generator: torch.Generator,
) -> TaskInput:
    """A task of ``data_bytes`` bytes drawn from ``images`` (N x 1 x 28 x 28 in [0, 1], held out)
    with their digit ``labels``; ``noisy`` applies :func:`add_noise` (theta = 1)."""
    n = images_per_task(data_bytes)
    idx = torch.randint(0, images.shape[0], (n,), generator=generator)
    view = kind.transform(images[idx])
    if noisy:
        view = add_noise(view, generator)
    return TaskInput(kind.name, int(data_bytes), bool(noisy), to_uint8(view), kind.labels(labels[idx]))


def draw_task_parameters(
    rng: np.random.Generator, n: int, noisy_fraction: float = NOISY_FRACTION
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` tasks' (D bytes, T^max s, theta) as in Section V-A: uniform D and T^max over
    Table IV's ranges, theta = 1 with probability ``noisy_fraction``."""
    data_bytes = rng.integers(TASK_BYTES_RANGE[0], TASK_BYTES_RANGE[1] + 1, size=n)
    deadline_s = rng.uniform(*DEADLINE_S_RANGE, size=n)
    noisy = rng.random(n) < noisy_fraction
    return data_bytes, deadline_s, noisy


def split_data(
    images: torch.Tensor, labels: torch.Tensor, test_fraction: float, seed: int
) -> Tuple[Tuple[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]:
    """A stratified train/test split (per digit class), seeded; returns ``(train, test)``."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    gen = torch.Generator().manual_seed(seed)
    train_idx, test_idx = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        k = max(1, int(round(test_fraction * idx.numel())))
        test_idx.append(idx[:k])
        train_idx.append(idx[k:])
    tr, te = torch.cat(train_idx).sort().values, torch.cat(test_idx).sort().values
    return (images[tr], labels[tr]), (images[te], labels[te])


def generator(seed: Optional[int]) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(0 if seed is None else int(seed))
    return gen
