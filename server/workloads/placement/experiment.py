"""Shared steps of the placement suites: measure a profile, build the system, train and
evaluate the schemes. A :class:`TrainJob` is picklable and :func:`run_train_job` is
module-level, so a suite may map jobs over worker processes.

Model mode only: outcomes come from :class:`~.env.ModelExecutor` on a profile whose
accuracies, sizes and inference times were measured on this host (the profile's label
says where).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from .agents import AgentConfig, RandomAgent, evaluate, load_agent, make_agent, save_agent, train
from .env import PlacementEnv
from .solver.model import IGW, PlacementProblem, PlacementProfile
from .solver.params import TABLE4, Resources, problem_from_profile

logger = logging.getLogger(__name__)


def measure_profile(
    preset: str = "quick",
    cache_dir: Optional[str] = None,
    repeats: int = 15,
    noise_draws: int = 3,
    data_root: Optional[str] = None,
    dataset: str = "mnist5k",
    seed: int = 0,
) -> Tuple[PlacementProfile, List[Dict[str, Any]], Any]:
    """Train (or load) the model zoo of ``preset`` and measure it on this host.

    This host plays the ECoS; a gateway's time is derived as C^e / C^l (Table IV) times
    slower. Returns the profile, the raw measurement records and the zoo.
    """
    import torch

    from edgebed.models.placement import measure, zoo

    if preset not in zoo.PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; one of {sorted(zoo.PRESETS)}")
    config = replace(zoo.PRESETS[preset], dataset=dataset, data_root=data_root, seed=seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: one thread is as fast and leaves a core free
    try:
        trained = zoo.load_or_train(config, cache_dir)
        records = [
            m.to_dict()
            for m in measure.measure_catalogue(trained, noise_draws=noise_draws, repeats=repeats, seed=seed)
        ]
    finally:
        torch.set_num_threads(threads)
    label = (
        f"measured on {records[0]['host']}: {dataset} models, preset {preset}, "
        f"{'trained' if trained.trained else 'loaded from cache'} ({config.key()})"
    )
    profile = PlacementProfile.from_measurements(
        records,
        label,
        node_speed_ratio={IGW: TABLE4["C_e_hz"] / TABLE4["C_l_hz"]},
    )
    return profile, records, trained


@dataclass(frozen=True)
class System:
    """What builds one :class:`PlacementProblem`: the profile, the size and the resources."""

    profile: PlacementProfile
    gateways: int
    devices_per_gateway: int
    seed: int
    anchor: str = "paper"
    resources: Resources = field(default_factory=Resources)

    def problem(self) -> PlacementProblem:
        # The same seed gives the same distances at every sweep point.
        return problem_from_profile(
            self.profile,
            self.gateways,
            self.devices_per_gateway,
            np.random.default_rng([self.seed, 17]),
            self.resources,
            self.anchor,
        )

    def with_resources(self, **values: float) -> System:
        return replace(self, resources=replace(self.resources, **values))


@dataclass(frozen=True)
class TrainJob:
    scheme: str
    system: System
    config: AgentConfig
    episodes: int
    slots_per_episode: int
    seed: int
    save_dir: Optional[str] = None
    eval_episodes: int = 3
    run: int = 0


def run_train_job(job: TrainJob) -> Dict[str, Any]:
    """Train one scheme; returns its per-episode rewards, an evaluation and where it was saved."""
    import time

    import torch

    torch.set_num_threads(1)
    problem = job.system.problem()
    env = PlacementEnv(problem, slots_per_episode=job.slots_per_episode)
    agent = make_agent(job.scheme, env, job.config, seed=job.seed)
    started = time.perf_counter()
    rewards = train(agent, job.episodes, job.slots_per_episode)
    train_s = time.perf_counter() - started
    metrics = evaluate(
        agent,
        PlacementEnv(problem, slots_per_episode=job.slots_per_episode),
        job.eval_episodes,
        seed=10_000 + job.seed,
    )
    path = None
    if job.save_dir:
        path = save_agent(
            agent, os.path.join(job.save_dir, job.scheme, f"run{job.run}"), job.scheme, job.config
        )
    return {
        "scheme": job.scheme,
        "run": job.run,
        "seed": job.seed,
        "rewards": rewards,
        "eval": metrics,
        "train_s": train_s,
        "path": path,
    }


def load_policies(
    paths: Mapping[str, str], problem: PlacementProblem, slots_per_episode: int
) -> Dict[str, Any]:
    """Each scheme's agent saved under ``paths[scheme]``, loaded once: a sweep evaluates the
    same agents at every point (:func:`evaluate_policy`), whose problems differ only in
    resources, so the observation and action spaces are ``problem``'s."""
    env = PlacementEnv(problem, slots_per_episode=slots_per_episode)
    return {scheme: load_agent(path, env)[1] for scheme, path in paths.items()}


def evaluate_policy(
    agent: Any, problem: PlacementProblem, episodes: int, slots_per_episode: int, seed: int
) -> Dict[str, float]:
    """Evaluate a loaded agent on ``problem`` (one sweep point). A Random agent restarts its
    generator first, so every point sees the draws a freshly loaded one would."""
    if isinstance(agent, RandomAgent):
        agent.restart()
    return evaluate(agent, PlacementEnv(problem, slots_per_episode=slots_per_episode), episodes, seed=seed)
