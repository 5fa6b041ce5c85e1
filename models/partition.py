"""Split a labelled dataset across devices, then 7:3 into train/test per device.

Paper 000 (Remark 1, Fig. 3b) assumes each device holds its own, usually
non-IID, data, and trains and tests with a 7:3 ratio (section V-A). Two
schemes:

- ``iid``: a seeded random permutation dealt into ``num_devices`` parts whose
  sizes differ by at most one;
- ``noniid``: label shards (McMahan et al.'s FedAvg recipe): sort the
  indices by label, cut them into ``num_devices * shards_per_device``
  contiguous shards, and give each device ``shards_per_device`` random
  shards, so a device sees about ``shards_per_device`` labels.

Every index lands on exactly one device. Each device's indices are then
shuffled and split with ``round(0.7 n)`` for training. Indices are int64
tensors into the original dataset.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Union

import numpy as np
import torch

from edgebed.proto.contracts.base import PARTITIONS

SCHEMES = PARTITIONS
TRAIN_FRACTION = 0.7  # section V-A: "the training testing ratio is 7:3"


@dataclass(frozen=True)
class DeviceSplit:
    """One device's share: indices for training and for testing."""

    device: int
    train: torch.Tensor
    test: torch.Tensor

    @property
    def indices(self) -> torch.Tensor:
        return torch.cat([self.train, self.test])


def _as_labels(labels: Union[torch.Tensor, np.ndarray, list]) -> np.ndarray:
    arr = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if arr.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("labels is empty: nothing to partition")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {arr.dtype}")
    return arr


def _check_devices(num_devices: int, n: int) -> None:
    if isinstance(num_devices, bool) or not isinstance(num_devices, int) or num_devices < 1:
        raise ValueError(f"num_devices must be a positive int, got {num_devices!r}")
    if num_devices > n:
        raise ValueError(f"num_devices={num_devices} exceeds the {n} samples")


def partition_iid(n: int, num_devices: int, seed: int = 0) -> List[torch.Tensor]:
    """Indices 0..n-1 shuffled and dealt into ``num_devices`` near-equal parts."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"number of samples must be a positive int, got {n!r}")
    _check_devices(num_devices, n)
    perm = np.random.default_rng(seed).permutation(n)
    return [torch.from_numpy(np.sort(part)).long() for part in np.array_split(perm, num_devices)]


def partition_noniid(labels, num_devices: int, shards_per_device: int = 2,
                     seed: int = 0) -> List[torch.Tensor]:
    """Label-sorted shards, ``shards_per_device`` random ones per device."""
    arr = _as_labels(labels)
    _check_devices(num_devices, arr.size)
    if isinstance(shards_per_device, bool) or not isinstance(shards_per_device, int) \
            or shards_per_device < 1:
        raise ValueError(f"shards_per_device must be a positive int, got {shards_per_device!r}")
    shards = num_devices * shards_per_device
    if shards > arr.size:
        raise ValueError(f"{num_devices} devices x {shards_per_device} shards = {shards} shards "
                         f"exceed the {arr.size} samples")
    rng = np.random.default_rng(seed)
    # Shuffle before the stable sort so a shard's samples within one label are random.
    perm = rng.permutation(arr.size)
    by_label = perm[np.argsort(arr[perm], kind="stable")]
    pieces = np.array_split(by_label, shards)
    order = rng.permutation(shards)
    return [torch.from_numpy(np.sort(np.concatenate(
        [pieces[s] for s in order[d * shards_per_device:(d + 1) * shards_per_device]]))).long()
        for d in range(num_devices)]


def train_test_split(indices: torch.Tensor, train_fraction: float = TRAIN_FRACTION,
                     seed: int = 0):
    """Shuffle ``indices`` and split them ``round(train_fraction * n)`` : rest."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must lie strictly between 0 and 1, got {train_fraction}")
    idx = torch.as_tensor(indices, dtype=torch.long)
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(idx.numel())).long()
    cut = int(round(train_fraction * idx.numel()))
    shuffled = idx[perm]
    return shuffled[:cut].sort().values, shuffled[cut:].sort().values


def partition(labels, num_devices: int, scheme: str = "iid", shards_per_device: int = 2,
              train_fraction: float = TRAIN_FRACTION, seed: int = 0) -> List[DeviceSplit]:
    """Partition the samples behind ``labels`` and split each device's share 7:3."""
    arr = _as_labels(labels)
    if scheme == "iid":
        parts = partition_iid(arr.size, num_devices, seed)
    elif scheme == "noniid":
        parts = partition_noniid(arr, num_devices, shards_per_device, seed)
    else:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    splits = []
    for d, part in enumerate(parts):
        train, test = train_test_split(part, train_fraction, seed + 1 + d)
        splits.append(DeviceSplit(d, train, test))
    return splits


def split_holdout(labels, holdout: float, seed: int = 0):
    """``(device_indices, server_test_indices)``: a seeded split that every
    node computes identically, so the server's test set never reaches a device."""
    n = _as_labels(labels).size
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be in (0, 1), got {holdout}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = int(round(holdout * n))
    return order[cut:], order[:cut]
