"""Measure what the placement model of Zhang et al., "Deep Reinforcement Learning Based Resource
Management for DNN Inference in Industrial IoT" (Table II) takes as given: per model the accuracy
on clean and on noisy inputs (P_UL, P_UH, P_DL, P_DH), the size S^n and the inference time
behind the workload Q^n.

- Accuracy: on the held-out test split of the zoo's data, in the task type's view; noisy
  accuracy over ``noise_draws`` independent draws of the noise model (:mod:`.tasks`).
- Size: the bytes of ``torch.save(state_dict)`` written to memory (what crosses the wire
  and sits in a cache), :func:`.cache.model_bytes`.
- Inference time: :func:`inference_time_s`, the median of ``repeats`` timed forward passes
  (``time.perf_counter``) over one reference task (Table IV's middle size, 50 KB: 63 digits)
  after ``warmup`` untimed passes, in eval mode without autograd. A device calls
  :func:`measure_inference_times` on its own models to report its own times.

:func:`measure_catalogue` returns one :class:`ModelMeasurement` per model; its
``to_dict`` form is what the server's placement profile is built from.
"""

from __future__ import annotations

import logging
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from .cache import model_bytes
from .nets import HEAVY, LEVEL_NAMES, LIGHT, parameter_count
from .tasks import REFERENCE_TASK_BYTES, add_noise, generator, images_per_task, task_type
from .zoo import Zoo

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelMeasurement:
    """One model's measured inputs to the placement problem (all labelled measured)."""

    key: str  # "<task type>/<light|heavy>"
    task_type: str
    level: int  # 0 light, 1 heavy
    depth: int
    parameters: int
    size_bytes: int  # S^n: torch.save(state_dict) bytes
    acc_clean: float  # P_UL (light) or P_UH (heavy)
    acc_noisy: float  # P_DL or P_DH
    infer_s: float  # median time of one reference task on ``host``
    task_images: int  # digits in the reference task
    test_images: int  # held-out digits behind the accuracies
    host: str

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
    """Fraction of ``images`` (float, already in the task's view) classified as ``labels``."""
    model.eval()
    correct = 0
    for start in range(0, images.shape[0], batch):
        pred = model(images[start : start + batch]).argmax(dim=1)
        correct += int((pred == labels[start : start + batch]).sum())
    return correct / max(1, images.shape[0])


@torch.no_grad()
def inference_time_s(model: nn.Module, inputs: torch.Tensor, warmup: int = 3, repeats: int = 15) -> float:
    """Median wall time of ``model(inputs)`` over ``repeats`` calls after ``warmup`` calls."""
    if warmup < 0 or repeats < 1:
        raise ValueError(f"warmup must be >= 0 and repeats >= 1, got {warmup}, {repeats}")
    model.eval()
    for _ in range(warmup):
        model(inputs)
    times: List[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(inputs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def reference_task(
    zoo: Zoo, kind: str, task_bytes: int = REFERENCE_TASK_BYTES, seed: int = 0
) -> torch.Tensor:
    """The float input of one reference task of ``kind`` (held-out digits in its view)."""
    n = images_per_task(task_bytes)
    idx = torch.randint(0, zoo.test_images.shape[0], (n,), generator=generator(seed))
    return task_type(kind).transform(zoo.test_images[idx])


def measure_inference_times(
    zoo: Zoo, warmup: int = 3, repeats: int = 15, task_bytes: int = REFERENCE_TASK_BYTES
) -> Dict[str, float]:
    """``{model key: median seconds for one reference task}`` on this node."""
    out = {}
    for kind in zoo.config.task_types:
        x = reference_task(zoo, kind, task_bytes)
        for level in (LIGHT, HEAVY):
            out[Zoo.key_of(kind, level)] = inference_time_s(zoo.model(kind, level), x, warmup, repeats)
    return out


def measure_catalogue(
    zoo: Zoo,
    noise_draws: int = 3,
    warmup: int = 3,
    repeats: int = 15,
    host: Optional[str] = None,
    seed: int = 0,
) -> List[ModelMeasurement]:
    """Every model of ``zoo`` measured on this node (see the module docstring)."""
    if noise_draws < 1:
        raise ValueError(f"noise_draws must be >= 1, got {noise_draws}")
    host = host or platform.node() or "this-host"
    times = measure_inference_times(zoo, warmup, repeats)
    out = []
    for kind in zoo.config.task_types:
        kt = task_type(kind)
        clean, labels = kt.transform(zoo.test_images), kt.labels(zoo.test_labels)
        gen = generator(seed + 7919)
        noisy_sets = [add_noise(clean, gen) for _ in range(noise_draws)]
        for level in (LIGHT, HEAVY):
            net = zoo.model(kind, level)
            key = Zoo.key_of(kind, level)
            out.append(
                ModelMeasurement(
                    key=key,
                    task_type=kind,
                    level=level,
                    depth=net.config.depth,
                    parameters=parameter_count(net),
                    size_bytes=len(model_bytes(net)),
                    acc_clean=accuracy(net, clean, labels),
                    acc_noisy=statistics.mean(accuracy(net, x, labels) for x in noisy_sets),
                    infer_s=times[key],
                    task_images=images_per_task(REFERENCE_TASK_BYTES),
                    test_images=int(labels.numel()),
                    host=host,
                )
            )
            logger.info(
                "%s (%s): %d B, P clean %.3f noisy %.3f, %.2f ms",
                key,
                LEVEL_NAMES[level],
                out[-1].size_bytes,
                out[-1].acc_clean,
                out[-1].acc_noisy,
                1e3 * out[-1].infer_s,
            )
    return out
