"""Compute shares beta enforced by time-slicing (eq. (6) of Zhang et al., "Deep Reinforcement
Learning Based Resource Management for DNN Inference in Industrial IoT").

Eq. (6) gives a task with share beta of a node of capacity C the delay Q / (beta C): the
task owns a fixed fraction of the processor for as long as it runs. :class:`ShareScheduler`
enforces exactly that on a real node. One thread runs every task's inference; time is cut
into periods of ``period_s`` (20 ms by default), and in every period each running task may
compute for at most ``beta * period_s`` (measured with ``time.perf_counter``), in chunks of
a few digits; the rest of the period stays idle. The shares are ceilings, not weights, as
cgroup CPU bandwidth quotas are: a task never runs faster because another finished early,
so its measured compute time is its full-speed time over beta, plus at most one period of
alignment. An overrun of a task's budget (a chunk cannot be interrupted) is paid back in
its next period.

Both the gateways (beta^l) and the edge server (beta^e) run one scheduler. Device-safe:
Python 3.8, torch >= 1.10.
"""
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import List, Optional

import torch
from torch import nn

logger = logging.getLogger(__name__)

#: Digits per uninterruptible forward pass: small enough for a 20 ms period to hold
#: several chunks of the heaviest model, large enough that call overhead stays small.
CHUNK_IMAGES = 4


@dataclass(frozen=True)
class Inference:
    """A finished job: its predictions and when it ran."""

    predictions: torch.Tensor
    compute_s: float          # from submission to the last chunk: eq. (6)'s c, as enforced
    busy_s: float             # CPU time the job itself used (its full-speed work)


@dataclass(eq=False)  # identity: jobs hold tensors, which do not compare as bools
class _Job:
    model: nn.Module
    inputs: torch.Tensor
    share: float
    future: "Future[Inference]"
    submitted: float
    done: int = 0
    busy_s: float = 0.0
    credit_s: float = 0.0     # negative after an overrun
    outputs: List[torch.Tensor] = field(default_factory=list)


@torch.no_grad()
def run_chunked(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Predictions of ``model`` on ``inputs`` in the scheduler's chunks, at full speed
    (how a node times a model: the same passes a task will make)."""
    return torch.cat([model(inputs[i:i + CHUNK_IMAGES]).argmax(dim=1)
                      for i in range(0, inputs.shape[0], CHUNK_IMAGES)])


class ShareScheduler:
    """One inference thread; each job computes for at most its share of every period."""

    def __init__(self, period_s: float = 0.02, name: str = "shares") -> None:
        if not 0.0 < period_s <= 1.0:
            raise ValueError(f"period_s must be in (0, 1], got {period_s}")
        self.period_s = period_s
        self._jobs: List[_Job] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, model: nn.Module, inputs: torch.Tensor, share: float) -> "Future[Inference]":
        """Run ``model`` on ``inputs`` (a batch) at ``share`` of this node (0 < share <= 1)."""
        if not 0.0 < share <= 1.0:
            raise ValueError(f"a compute share must be in (0, 1], got {share}")
        if inputs.shape[0] < 1:
            raise ValueError("an inference job needs at least one input")
        future: "Future[Inference]" = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the scheduler is closed")
            self._jobs.append(_Job(model, inputs, float(share), future, time.perf_counter()))
            self._cond.notify()
        return future

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for job in self._jobs:
                job.future.cancel()
            self._jobs.clear()
            self._cond.notify()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                jobs = list(self._jobs)
            start = time.perf_counter()
            for job in jobs:
                if job.future.cancelled():
                    self._remove(job)
                    continue
                self._run_for(job, job.credit_s + job.share * self.period_s)
            idle = start + self.period_s - time.perf_counter()
            if idle > 0:
                time.sleep(idle)

    def _run_for(self, job: _Job, budget_s: float) -> None:
        used = 0.0
        try:
            while used < budget_s and job.done < job.inputs.shape[0]:
                t0 = time.perf_counter()
                chunk = job.inputs[job.done:job.done + CHUNK_IMAGES]
                job.outputs.append(job.model(chunk).argmax(dim=1))
                used += time.perf_counter() - t0
                job.done += chunk.shape[0]
        except Exception as exc:  # a broken model fails its own job, not the node
            self._remove(job)
            job.future.set_exception(exc)
            return
        job.busy_s += used
        job.credit_s = budget_s - used if used > budget_s else 0.0
        if job.done >= job.inputs.shape[0]:
            self._remove(job)
            job.future.set_result(Inference(torch.cat(job.outputs),
                                            time.perf_counter() - job.submitted, job.busy_s))

    def _remove(self, job: _Job) -> None:
        with self._cond:
            if job in self._jobs:
                self._jobs.remove(job)


def time_model(model: nn.Module, inputs: torch.Tensor, warmup: int = 2,
               repeats: int = 7) -> float:
    """Median full-speed seconds of :func:`run_chunked` on ``inputs``: a node's Q / C."""
    import statistics

    model.eval()
    for _ in range(warmup):
        run_chunked(model, inputs)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        run_chunked(model, inputs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def build_net(depth: int, width: int, hidden: int, pooled: int, classes: int,
              state_dict: Optional[dict] = None) -> nn.Module:
    """A :class:`~.nets.DigitNet` of the given structure, with ``state_dict`` if given."""
    from .nets import DigitNet, NetConfig

    net = DigitNet(NetConfig(depth=depth, width=width, hidden=hidden, pooled=pooled), classes)
    if state_dict is not None:
        net.load_state_dict(state_dict)
    return net.eval()
