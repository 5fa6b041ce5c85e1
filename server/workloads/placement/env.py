"""The MDP of Zhang et al., "Deep Reinforcement Learning Based Resource Management for DNN
Inference in Industrial IoT" (Section IV-A) as a gymnasium environment.

- State, eq. (12): per task (device order) D, T^max, theta and the cache flags u^{l0},
  u^{l1}, u^{e0}, u^{e1}; D and T^max are mapped from Table IV's ranges onto [0, 1].
- Action, eq. (13): N x 10 values in [-1, 1] per task, in the order of
  :data:`ACTION_COLUMNS`. m, phi and omega are discretized at 0 (Algorithm 1 line 9).
  alpha and beta are weights ``WEIGHT_BASE ** a`` (1/1.5 to 1.5, i.e. 0.667 to 1.5)
  normalized over the tasks that share the resource: alpha^l over each gateway's tasks (its
  band B), alpha^e and beta^e over the ECoS tasks, beta^l over each gateway's IGW tasks. So
  C2-C5 and C7 hold by construction, and a saturated output (the actor's tanh at -1) cannot
  starve a task to a zero share: the shares the agent can ask for differ by at most a
  factor of WEIGHT_BASE ** 2 = 2.25.
- Reward, eq. (14): the slot's average accuracy (1/N) sum U, where a task earns its U
  (eq. 10) only if it completes within T^max (C1) with its model placed by DCPU (C6, whose
  capacity test DCPU applies model by model); 0 if the executed decision violates any of
  C2-C5, C7 (only a hand-made decision can).
- A slot is one step; an episode is ``slots_per_episode`` slots (Table IV: 50) starting
  from empty caches, ending by truncation.

Executing a slot goes through one narrow hook, :class:`SlotExecutor`:
``execute(SlotDecisions) -> SlotOutcomes``. :class:`ModelExecutor` (model mode) predicts
the outcomes with eqs. (1)-(10) and DCPU from the problem's profile: fast, for
training. A testbed executor runs the same slot on real gateways (tasks of D real bytes,
models moved and cached, inference timed) and returns measured per-task completion,
accuracy and the caches as they now are; the environment does not change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, Optional, Protocol, Tuple

import gymnasium as gym
import numpy as np

from .solver.dcpu import TaskOutcome, dcpu
from .solver.model import (
    IGW,
    CacheState,
    Decision,
    PlacementProblem,
    SlotTasks,
    average_accuracy,
    check_constraints,
)
from .solver.params import NOISY_FRACTION, TABLE4

logger = logging.getLogger(__name__)

ACTION_COLUMNS = (
    "m",
    "phi",
    "alpha_l",
    "alpha_e",
    "beta_l",
    "beta_e",
    "omega_l0",
    "omega_l1",
    "omega_e0",
    "omega_e1",
)
STATE_COLUMNS = ("D", "T_max", "theta", "u_l0", "u_l1", "u_e0", "u_e1")
#: Resource weights are WEIGHT_BASE ** a for a in [-1, 1].
WEIGHT_BASE = 1.5


@dataclass(frozen=True)
class SlotDecisions:
    """Everything needed to execute one slot."""

    problem: PlacementProblem
    tasks: SlotTasks
    cache: CacheState  # caches at the start of the slot (the state's u)
    decision: Decision
    slot: int


@dataclass(frozen=True)
class SlotOutcomes:
    """Per-task outcomes, the caches after the slot, and the constraints the decision broke."""

    outcomes: Tuple[TaskOutcome, ...]
    cache: CacheState
    violations: Tuple[str, ...]
    provenance: str  # "modeled" (ModelExecutor) or "measured" (a testbed)


class SlotExecutor(Protocol):
    def execute(self, slot: SlotDecisions) -> SlotOutcomes: ...


class ModelExecutor:
    """Model mode: outcomes predicted by eqs. (1)-(10) with DCPU (Algorithm 1, lines 12-33)."""

    provenance = "modeled"

    def execute(self, slot: SlotDecisions) -> SlotOutcomes:
        # decode_action's decisions hold C2-C5 and C7 by construction; this scores a hand-made
        # SlotDecisions given to execute directly (reward 0). C6 is DCPU's (module docstring).
        violations = tuple(check_constraints(slot.problem, slot.decision, capacity=False))
        result = dcpu(slot.problem, slot.tasks, slot.cache, slot.decision)
        return SlotOutcomes(result.outcomes, result.cache, violations, self.provenance)


def _normalize(weights: np.ndarray, groups: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Shares proportional to ``weights`` within each group, over ``members`` only (0 elsewhere)."""
    out = np.zeros_like(weights)
    for g in np.unique(groups[members]):
        sel = members & (groups == g)
        out[sel] = weights[sel] / weights[sel].sum()
    return out


def decode_action(problem: PlacementProblem, action: np.ndarray) -> Decision:
    """Eq. (13) from the agent's N x 10 output (see the module docstring)."""
    n = problem.n_tasks
    a = np.clip(np.asarray(action, dtype=np.float64).reshape(n, len(ACTION_COLUMNS)), -1.0, 1.0)
    m = a[:, 0] > 0
    w = WEIGHT_BASE ** a[:, 2:6]
    everyone = np.ones(n, dtype=bool)
    gw = problem.gateway_of
    zeros = np.zeros(n, dtype=np.int64)
    return Decision(
        on_gateway=m.astype(np.int64),
        heavy=(a[:, 1] > 0).astype(np.int64),
        alpha_l=_normalize(w[:, 0], gw, everyone),
        alpha_e=_normalize(w[:, 1], zeros, ~m),
        beta_l=_normalize(w[:, 2], gw, m),
        beta_e=_normalize(w[:, 3], zeros, ~m),
        keep=(a[:, 6:10] > 0).astype(np.int64),
    )


def _unit(x: np.ndarray, lo_hi: Tuple[float, float]) -> np.ndarray:
    return np.clip((np.asarray(x, float) - lo_hi[0]) / (lo_hi[1] - lo_hi[0]), 0.0, 1.0)


def encode_state(problem: PlacementProblem, tasks: SlotTasks, cache: CacheState) -> np.ndarray:
    """Eq. (12) as a flat float32 vector of N x 7 values in [0, 1]."""
    cols = np.column_stack(
        [
            _unit(tasks.data_bytes, TABLE4["D_bytes"]),
            _unit(tasks.deadline_s, TABLE4["T_max_s"]),
            np.asarray(tasks.noisy, float),
            cache.flags(problem),
        ]
    )
    return cols.astype(np.float32).ravel()


def slot_reward(out: SlotOutcomes) -> float:
    """Eq. (14)."""
    if out.violations:
        return 0.0
    return average_accuracy(
        np.array([o.accuracy for o in out.outcomes]), np.array([o.completed for o in out.outcomes])
    )


def slot_metrics(out: SlotOutcomes) -> Dict[str, float]:
    """Counts and averages of one slot (completion ratio, accuracy, by node and level)."""
    o = out.outcomes
    at_gw = np.array([x.node == IGW for x in o])
    done = np.array([x.completed for x in o])
    heavy = np.array([x.model.endswith("/heavy") for x in o])
    acc = np.array([x.accuracy for x in o])
    return {
        "completion": float(done.mean()),
        "accuracy": float(acc.mean()),
        "tasks_igw": int(at_gw.sum()),
        "tasks_bs": int((~at_gw).sum()),
        "completed_igw": int((done & at_gw).sum()),
        "completed_bs": int((done & ~at_gw).sum()),
        "accuracy_sum_igw": float(acc[at_gw].sum()),
        "accuracy_sum_bs": float(acc[~at_gw].sum()),
        "heavy": int(heavy.sum()),
        "completed_heavy": int((done & heavy).sum()),
        "cached_igw": int(sum(len(s) for s in out.cache.gateways)),
        "cached_edge": int(len(out.cache.edge)),
        "placed_igw": int(sum(x.placed for x in o if x.node == IGW)),
        "placed_edge": int(sum(x.placed for x in o if x.node != IGW)),
        "violations": len(out.violations),
    }


class PlacementEnv(gym.Env):
    """Eqs. (12)-(14) over one :class:`PlacementProblem`; ``executor`` runs each slot."""

    metadata: Dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        problem: PlacementProblem,
        executor: Optional[SlotExecutor] = None,
        slots_per_episode: int = 50,
        noisy_fraction: float = NOISY_FRACTION,
    ):
        super().__init__()
        if slots_per_episode < 1:
            raise ValueError(f"slots_per_episode must be >= 1, got {slots_per_episode}")
        if not 0.0 <= noisy_fraction <= 1.0:
            raise ValueError(f"noisy_fraction must be in [0, 1], got {noisy_fraction}")
        self.problem = problem
        self.executor: SlotExecutor = executor or ModelExecutor()
        self.slots_per_episode = slots_per_episode
        self.noisy_fraction = noisy_fraction
        n = problem.n_tasks
        self.observation_space = gym.spaces.Box(0.0, 1.0, (n * len(STATE_COLUMNS),), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (n * len(ACTION_COLUMNS),), dtype=np.float32)
        self.cache = CacheState.empty(len(problem.gateways))
        self.slot = 0
        self.tasks = self._draw_tasks()

    def _draw_tasks(self) -> SlotTasks:
        rng, n = self.np_random, self.problem.n_tasks
        return SlotTasks(
            rng.uniform(*TABLE4["D_bytes"], size=n).round(),
            rng.uniform(*TABLE4["T_max_s"], size=n),
            rng.random(n) < self.noisy_fraction,
        )

    def _obs(self) -> np.ndarray:
        return encode_state(self.problem, self.tasks, self.cache)

    def reset(self, *, seed: Optional[int] = None, options: Optional[Dict[str, Any]] = None):
        super().reset(seed=seed)
        self.cache = CacheState.empty(len(self.problem.gateways))
        self.slot = 0
        self.tasks = self._draw_tasks()
        return self._obs(), {}

    def step(self, action: np.ndarray):
        decision = decode_action(self.problem, action)
        out = self.executor.execute(SlotDecisions(self.problem, self.tasks, self.cache, decision, self.slot))
        reward = slot_reward(out)
        info = slot_metrics(out)
        info["provenance"] = out.provenance
        self.cache = out.cache
        self.slot += 1
        self.tasks = self._draw_tasks()
        return self._obs(), reward, False, self.slot >= self.slots_per_episode, info
