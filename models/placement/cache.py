"""A node's model cache of real capacity (S^l at a gateway, S^e at the edge), Section III-C of
Zhang et al., "Deep Reinforcement Learning Based Resource Management for DNN Inference in
Industrial IoT".

A model enters the cache as the complete bytes of ``torch.save(state_dict)`` that crossed a
link. :meth:`ModelCache.put` checks everything before anything changes: the bytes are as many
as announced, they load into the model's structure, and the cache has room. A transfer that
was cut off never reaches ``put``, and bytes that fail any check are refused with
:class:`CacheRefused` naming why; either way the cache is left as it was. The cache tracks the
most it ever held (``peak_bytes``) so a run can show it never held more than its capacity.

Device-safe: Python 3.8, torch >= 1.10.
"""
import io
import logging
import threading
from typing import Callable, Dict, Iterable, List, Tuple

import numpy as np
import torch
from torch import nn

from edgebed import EdgebedError

logger = logging.getLogger(__name__)

#: ``structure(key) -> an untrained module of that model's structure``; raises KeyError
#: for a model outside the catalogue.
Builder = Callable[[str], nn.Module]


class CacheRefused(EdgebedError, ValueError):
    """A model the cache will not hold: unknown, malformed, or no room."""


def model_bytes(module: nn.Module) -> bytes:
    """What a model is on the wire and in a cache: ``torch.save(state_dict)``."""
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return buf.getvalue()


def bytes_tensor(blob: bytes) -> torch.Tensor:
    """``blob`` as the 1-D uint8 tensor a transfer carries (a copy, so it is writable)."""
    return torch.from_numpy(np.frombuffer(blob, dtype=np.uint8).copy())


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """The bytes a transfer's 1-D uint8 tensor carries (the inverse of :func:`bytes_tensor`)."""
    return tensor.contiguous().numpy().tobytes()


def load_model(blob: bytes, module: nn.Module) -> nn.Module:
    """``module`` with the weights in ``blob`` (tensors only: nothing else is unpickled
    on torch versions that can refuse it)."""
    buf = io.BytesIO(blob)
    try:
        state = torch.load(buf, map_location="cpu", weights_only=True)
    except TypeError:  # torch < 1.13 has no weights_only
        buf.seek(0)
        state = torch.load(buf, map_location="cpu")
    module.load_state_dict(state)
    return module.eval()


class ModelCache:
    """Models held by one node, at most ``capacity_bytes`` of them (thread-safe)."""

    def __init__(self, capacity_bytes: int, structure: Builder, name: str = "cache") -> None:
        if capacity_bytes < 0:
            raise ValueError(f"a cache capacity must be >= 0 bytes, got {capacity_bytes}")
        self.capacity_bytes = int(capacity_bytes)
        self.name = name
        self._structure = structure
        self._models: Dict[str, Tuple[bytes, nn.Module]] = {}
        self._lock = threading.Lock()
        self.peak_bytes = 0

    @property
    def held_bytes(self) -> int:
        with self._lock:
            return sum(len(blob) for blob, _ in self._models.values())

    def keys(self) -> List[str]:
        with self._lock:
            return sorted(self._models)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._models

    def get(self, key: str) -> nn.Module:
        with self._lock:
            if key not in self._models:
                raise CacheRefused(f"{self.name} does not hold {key!r}")
            return self._models[key][1]

    def blob(self, key: str) -> bytes:
        """The bytes model ``key`` arrived as (what this node forwards)."""
        with self._lock:
            if key not in self._models:
                raise CacheRefused(f"{self.name} does not hold {key!r}")
            return self._models[key][0]

    def put(self, key: str, blob: bytes, announced_bytes: int) -> nn.Module:
        """Hold model ``key`` from its complete ``blob``; returns the loaded module.

        Raises CacheRefused (the cache unchanged) for an unknown model, bytes
        other than announced, bytes that do not load into its structure, or
        no room."""
        if len(blob) != announced_bytes:
            raise CacheRefused(f"{key!r} arrived with {len(blob)} B, {announced_bytes} B "
                               "were announced: not cached")
        try:
            module = self._structure(key)
        except KeyError:
            raise CacheRefused(f"unknown model {key!r}: not in the catalogue") from None
        try:
            module = load_model(blob, module)
        except Exception as exc:  # pickle, zip or shape errors: the bytes are not that model
            raise CacheRefused(f"{key!r} does not load into its structure ({exc}): "
                               "not cached") from None
        with self._lock:
            if key in self._models:
                return self._models[key][1]
            held = sum(len(blob) for blob, _ in self._models.values())
            if held + len(blob) > self.capacity_bytes:
                raise CacheRefused(
                    f"{self.name} holds {held} B of {self.capacity_bytes} B; {key!r} "
                    f"({len(blob)} B) does not fit")
            self._models[key] = (bytes(blob), module)
            self.peak_bytes = max(self.peak_bytes, held + len(blob))
        logger.info("%s cached %s (%d B)", self.name, key, len(blob))
        return module

    def keep(self, keys: Iterable[str]) -> List[str]:
        """Step 4 of DCPU: drop every model not in ``keys``; returns the dropped."""
        wanted = set(keys)
        with self._lock:
            dropped = sorted(k for k in self._models if k not in wanted)
            for key in dropped:
                del self._models[key]
        return dropped

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self.peak_bytes = 0
