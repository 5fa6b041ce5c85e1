"""The placement MDP (eqs. 12-14) as a gymnasium env, its executor hook and the SB3 agents."""

import numpy as np
import pytest
from edgebed.server.workloads.placement import agents
from edgebed.server.workloads.placement.env import (
    ACTION_COLUMNS,
    ModelExecutor,
    PlacementEnv,
    SlotDecisions,
    SlotOutcomes,
    decode_action,
    encode_state,
)
from edgebed.server.workloads.placement.solver import params
from edgebed.server.workloads.placement.solver.model import CacheState, SlotTasks
from gymnasium.utils.env_checker import check_env

from tests.test_placement_model import small_problem


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def problem():
    profile = params.paper_profile(["digit", "parity", "high", "lowres"], np.random.default_rng(0))
    return params.problem_from_profile(profile, 2, 2, np.random.default_rng(1))


def test_env_passes_gymnasiums_checker(problem):
    env = PlacementEnv(problem, slots_per_episode=5)
    check_env(env, skip_render_check=True)
    assert env.observation_space.shape == (problem.n_tasks * 7,)
    assert env.action_space.shape == (problem.n_tasks * len(ACTION_COLUMNS),)


def test_episode_truncates_after_its_slots(problem):
    env = PlacementEnv(problem, slots_per_episode=3)
    env.reset(seed=0)
    flags = [env.step(env.action_space.sample())[3] for _ in range(3)]
    assert flags == [False, False, True]


def test_decoded_shares_meet_c4_c5_by_construction(problem):
    rng = np.random.default_rng(0)
    for _ in range(20):
        d = decode_action(problem, rng.uniform(-1, 1, problem.n_tasks * 10))
        m = d.on_gateway.astype(bool)
        assert d.alpha_e[~m].sum() == pytest.approx(1.0 if (~m).any() else 0.0)
        assert (d.alpha_e[m] == 0).all() and (d.beta_e[m] == 0).all() and (d.beta_l[~m] == 0).all()
        for i in range(len(problem.gateways)):
            assert d.alpha_l[problem.gateway_of == i].sum() == pytest.approx(1.0)
            here = m & (problem.gateway_of == i)
            assert d.beta_l[here].sum() == pytest.approx(1.0 if here.any() else 0.0)
        # No saturated output starves a task: shares of one band differ by at most 1.5**2.
        here = problem.gateway_of == 0
        assert d.alpha_l[here].max() / d.alpha_l[here].min() <= 2.25 + 1e-9


def test_reward_is_eq_14_on_a_constructed_state():
    p = small_problem()
    env = PlacementEnv(p, slots_per_episode=4)
    env.reset(seed=0)
    env.tasks = SlotTasks(np.array([10_000.0, 10_000.0]), np.array([2.0, 2.0]), np.array([False, True]))
    env.cache = CacheState.empty(1)
    state = encode_state(p, env.tasks, env.cache)
    # D = 10 KB is below Table IV's range (mapped to 0); T^max = 2 s is its top (1); theta; no cached models.
    assert state.reshape(2, 7).tolist() == [[0, 1, 0, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0, 0]]
    # Task 0: IGW, heavy; task 1: ECoS, light; equal weights; keep everything.
    action = np.array([[1, 1, 0, 0, 0, 0, 1, 1, 1, 1], [-1, -1, 0, 0, 0, 0, 1, 1, 1, 1]], dtype=np.float32)
    obs, reward, terminated, truncated, info = env.step(action.ravel())
    # By hand (see test_placement_model): d = 0.8 s and 0.125 s, both within 2 s; U = P_UH(a) = 0.95 and
    # P_DL(b) = 0.80; eq. (14): (0.95 + 0.80) / 2.
    assert reward == pytest.approx(0.875)
    assert info["completion"] == 1.0
    assert not terminated and not truncated
    u = obs.reshape(2, 7)[:, 3:]
    assert u.tolist() == [[0, 1, 0, 0], [0, 0, 1, 0]]  # a/heavy now at the IGW, b/light at the ECaS


def test_reward_is_zero_when_the_executed_decision_breaks_a_constraint():
    class Breaking(ModelExecutor):
        def execute(self, slot: SlotDecisions) -> SlotOutcomes:
            out = super().execute(slot)
            return SlotOutcomes(
                out.outcomes, out.cache, ("C4 sum of alpha_l over all tasks is 1.4 > 1",), "measured"
            )

    env = PlacementEnv(small_problem(), executor=Breaking(), slots_per_episode=2)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.ones(20, dtype=np.float32))
    assert reward == 0.0
    assert info["provenance"] == "measured"


def test_td3_ddpg_and_random_learn_a_few_hundred_steps_and_round_trip(problem, tmp_path):
    tiny = agents.AgentConfig(
        actor_layers=(16,),
        critic_layers=(16,),
        ddpg_critic_layers=(16,),
        learning_starts=50,
        lr_actor=1e-4,
        lr_critic=3e-4,
    )
    for scheme in agents.SCHEMES:
        env = PlacementEnv(problem, slots_per_episode=20)
        agent = agents.make_agent(scheme, env, tiny, seed=0)
        rewards = agents.train(agent, episodes=10, slots_per_episode=20)
        assert len(rewards) == 10
        assert all(0.0 <= r <= 1.0 for r in rewards)
        if scheme != "random":  # Table IV's two learning rates reached the two optimizers
            assert agent.actor.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
            assert agent.critic.optimizer.param_groups[0]["lr"] == pytest.approx(3e-4)
        path = agents.save_agent(agent, str(tmp_path / scheme), scheme, tiny)
        loaded_scheme, loaded = agents.load_agent(path, PlacementEnv(problem, slots_per_episode=20))
        assert loaded_scheme == scheme
        if scheme != "random":
            obs, _ = env.reset(seed=3)
            assert np.allclose(
                agent.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
            )
        metrics = agents.evaluate(loaded, PlacementEnv(problem, slots_per_episode=5), episodes=1)
        assert 0.0 <= metrics["completion"] <= 1.0


def test_ddpg_is_td3_without_its_tricks(problem):
    env = PlacementEnv(problem, slots_per_episode=5)
    td3 = agents.make_agent("td3", env, agents.QUICK, seed=0)
    ddpg = agents.make_agent("ddpg", env, agents.QUICK, seed=0)
    assert type(td3) is type(ddpg)
    assert (td3.policy_delay, ddpg.policy_delay) == (2, 1)
    assert ddpg.target_noise_clip == 0.0
    assert (td3.critic.n_critics, ddpg.critic.n_critics) == (2, 1)
    with pytest.raises(ValueError, match="unknown scheme"):
        agents.make_agent("sac", env)
