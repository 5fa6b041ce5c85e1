"""DCPU, the DNN caching pool updating subroutine of Zhang et al., "Deep Reinforcement Learning
Based Resource Management for DNN Inference in Industrial IoT" (Algorithm 1, lines 12-33). Pure.

For every task in Algorithm 1's ``i, k`` order (the problem's device order):

- Step 1 (lines 12-14): the space each cache already uses is the sum of the sizes of the
  models it holds from the previous slot.
- Step 2 (lines 15-21): a task whose model is not at its node (u = 0) requests it; the
  model is placed (u = 1, space taken) iff it fits in the remaining space and its
  transmission delay tau (eq. 5 by route) is within T^max, even when the task itself
  will be late ("the DNN models ... can provide instant inference services for the tasks
  of following time slots"). Otherwise it is not placed and the task cannot run (a model
  must be cached at the node that executes the task, Section I). The printed ``else
  u = 0`` is read as "not placed": a model that is already cached stays.
- Step 3 (lines 22-27): the task completes iff its model is at the node and its delay d
  (eqs. 7-9, with the start-of-slot u) is within T^max. The printed placement condition of
  this step (d <= T^max) implies Step 2's (d >= tau), so it places nothing new.
- Step 4 (lines 28-33): omega decides what stays. ``omega = 0`` deletes the model from the
  node, ``omega = 1`` keeps it. Models are shared by task type here, so several tasks
  decide on one cached model: it stays iff at least half of the tasks that can use it
  vote to keep it (with one device per model, the paper's dedicated models, this is
  exactly lines 28-33).

Models requested by several tasks of one slot travel once and serve all of them.
Errors (:class:`CacheError`, a ``ValueError``): a cache that holds an unknown model,
that has the wrong number of gateways or that is over capacity, and a placement
(:meth:`CachePool.place`) that would overfill a cache. The pool's state is replaced only
after a whole slot succeeds, so an error leaves the cache as it was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Optional, Set, Tuple

import numpy as np

from edgebed import EdgebedError

from .model import (
    ECOS,
    IGW,
    CacheState,
    Decision,
    PlacementProblem,
    SlotTasks,
    model_key,
    model_transfer_s,
    predict,
)

logger = logging.getLogger(__name__)

EDGE = "edge"


class CacheError(EdgebedError, ValueError):
    """A cache state or placement the problem cannot hold (unknown model or gateway, overfull)."""


@dataclass(frozen=True)
class TaskOutcome:
    """What one task got in a slot (model mode: predicted; testbed mode: measured)."""

    node: str  # "igw" or "ecos"
    gateway: int
    model: str
    completed: bool
    accuracy: float  # U of eq. (10) if completed, else 0
    expected_accuracy: float  # U of eq. (10)
    delay_s: float  # d of eq. (9); inf when the model could not be placed
    placed: bool  # the model was placed at the node in this slot
    reason: str  # "ok", "late", "no-space", "late-model"


@dataclass(frozen=True)
class DcpuResult:
    cache: CacheState
    outcomes: Tuple[TaskOutcome, ...]
    placed: Tuple[Tuple[str, str], ...]  # (node: "gateway<i>" or "edge", model) placed this slot
    evicted: Tuple[Tuple[str, str], ...]  # removed by omega at Step 4


def _node_name(gateway: Optional[int]) -> str:
    return EDGE if gateway is None else f"gateway{gateway}"


def used_bytes(problem: PlacementProblem, models: FrozenSet[str]) -> float:
    return float(sum(problem.catalogue[k].size_bytes for k in models))


def validate_cache(problem: PlacementProblem, cache: CacheState) -> None:
    """Raise :class:`CacheError` unless ``cache`` fits ``problem`` (Step 1's precondition)."""
    if len(cache.gateways) != len(problem.gateways):
        raise CacheError(
            f"the cache state has {len(cache.gateways)} gateways, the problem {len(problem.gateways)}"
        )
    pools = [(i, held, gw.cache_bytes) for i, (held, gw) in enumerate(zip(cache.gateways, problem.gateways))]
    pools.append((None, cache.edge, problem.edge_cache_bytes))
    for gateway, held, capacity in pools:
        unknown = sorted(set(held) - set(problem.catalogue))
        if unknown:
            raise CacheError(
                f"{_node_name(gateway)} caches unknown models {unknown}; the catalogue has "
                f"{sorted(problem.catalogue)}"
            )
        if used_bytes(problem, held) > capacity * (1 + 1e-12):
            raise CacheError(
                f"{_node_name(gateway)} holds {used_bytes(problem, held):.0f} B of models, "
                f"more than its capacity {capacity:.0f} B"
            )


def place(problem: PlacementProblem, cache: CacheState, gateway: Optional[int], key: str) -> CacheState:
    """``cache`` with model ``key`` added at ``gateway`` (``None``: the ECaS); raises
    :class:`CacheError` for an unknown gateway or model or when it would overfill the cache."""
    validate_cache(problem, cache)
    if key not in problem.catalogue:
        raise CacheError(f"unknown model {key!r}; the catalogue has {sorted(problem.catalogue)}")
    if gateway is not None and not 0 <= gateway < len(problem.gateways):
        raise CacheError(f"unknown gateway {gateway}; there are {len(problem.gateways)}")
    held = cache.edge if gateway is None else cache.gateways[gateway]
    capacity = problem.edge_cache_bytes if gateway is None else problem.gateways[gateway].cache_bytes
    need = used_bytes(problem, held | {key})
    if need > capacity:
        raise CacheError(
            f"placing {key} at {_node_name(gateway)} needs {need:.0f} B, its cache holds {capacity:.0f} B"
        )
    if gateway is None:
        return CacheState(cache.gateways, held | {key})
    gws = list(cache.gateways)
    gws[gateway] = held | {key}
    return CacheState(tuple(gws), cache.edge)


def dcpu(problem: PlacementProblem, tasks: SlotTasks, cache: CacheState, decision: Decision) -> DcpuResult:
    """One slot of Algorithm 1's lines 12-33 (see the module docstring)."""
    validate_cache(problem, cache)
    pred = predict(problem, tasks, cache, decision)
    gw_held: List[Set[str]] = [set(s) for s in cache.gateways]
    edge_held: Set[str] = set(cache.edge)
    # Step 1: space taken by the models cached in the previous slot.
    gw_used = [used_bytes(problem, s) for s in cache.gateways]
    edge_used = used_bytes(problem, cache.edge)
    placed: List[Tuple[str, str]] = []
    outcomes: List[TaskOutcome] = []
    for k, dev in enumerate(problem.devices):
        on_gw = bool(decision.on_gateway[k])
        spec = problem.model(dev.task_type, int(decision.heavy[k]))
        start = cache.gateways[dev.gateway] if on_gw else cache.edge
        held = gw_held[dev.gateway] if on_gw else edge_held
        deadline = float(tasks.deadline_s[k])
        reason = "ok"
        new = False
        if spec.key not in held:
            # Step 2: request the model; place it if it fits and arrives within T^max.
            tau = model_transfer_s(problem, spec, on_gw, spec.key in cache.edge, dev.gateway)
            used, capacity = (
                (gw_used[dev.gateway], problem.gateways[dev.gateway].cache_bytes)
                if on_gw
                else (edge_used, problem.edge_cache_bytes)
            )
            if used + spec.size_bytes > capacity:
                reason = "no-space"
            elif tau > deadline:
                reason = "late-model"
            else:
                held.add(spec.key)
                new = True
                placed.append((_node_name(dev.gateway if on_gw else None), spec.key))
                if on_gw:
                    gw_used[dev.gateway] += spec.size_bytes
                else:
                    edge_used += spec.size_bytes
        available = spec.key in held
        # Step 3: completion within T^max (d from eqs. 7-9 with the start-of-slot u).
        delay = float(pred.delay_s[k]) if available else float("inf")
        done = available and delay <= deadline
        if available and not done:
            reason = "late"
        outcomes.append(
            TaskOutcome(
                node=IGW if on_gw else ECOS,
                gateway=dev.gateway,
                model=spec.key,
                completed=done,
                accuracy=float(pred.accuracy[k]) if done else 0.0,
                expected_accuracy=float(pred.accuracy[k]),
                delay_s=delay,
                placed=new or (spec.key in held and spec.key not in start),
                reason=reason,
            )
        )
    # Step 4: omega keeps or deletes the models each task can use.
    keep = np.asarray(decision.keep, dtype=float)
    votes: Dict[Tuple[Optional[int], str], List[float]] = {}
    for k, dev in enumerate(problem.devices):
        for level in (0, 1):
            key = model_key(dev.task_type, level)
            votes.setdefault((dev.gateway, key), []).append(keep[k, level])
            votes.setdefault((None, key), []).append(keep[k, 2 + level])
    evicted: List[Tuple[str, str]] = []
    for (gateway, key), vs in votes.items():
        held = edge_held if gateway is None else gw_held[gateway]
        if key in held and np.mean(vs) < 0.5:
            held.discard(key)
            evicted.append((_node_name(gateway), key))
    new_cache = CacheState(tuple(frozenset(s) for s in gw_held), frozenset(edge_held))
    validate_cache(problem, new_cache)  # internal invariant: Step 2 never overfills
    return DcpuResult(new_cache, tuple(outcomes), tuple(placed), tuple(evicted))


class CachePool:
    """The caching pools across slots: :meth:`step` runs DCPU and keeps its result; any
    error (:class:`CacheError`, bad shapes) leaves the state as it was."""

    def __init__(self, problem: PlacementProblem, state: Optional[CacheState] = None):
        self.problem = problem
        state = CacheState.empty(len(problem.gateways)) if state is None else state
        validate_cache(problem, state)
        self.state = state

    def step(self, tasks: SlotTasks, decision: Decision) -> DcpuResult:
        result = dcpu(self.problem, tasks, self.state, decision)
        self.state = result.cache
        return result

    def place(self, gateway: Optional[int], key: str) -> CacheState:
        """Place ``key`` at ``gateway`` (``None``: the ECaS) now, or raise and change nothing."""
        self.state = place(self.problem, self.state, gateway, key)
        return self.state

    def reset(self) -> None:
        self.state = CacheState.empty(len(self.problem.gateways))
