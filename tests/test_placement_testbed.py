"""Placement (paper 002) on real agent processes: a cloud store and two gateways execute the
slots a policy decides; the faults (a bad decision, an unknown model, an overfull cache, a
transfer cut off, a gateway that dies mid-slot and comes back)."""
import asyncio
import os

import numpy as np
import pytest

from edgebed.proto.contracts import placement as pl
from edgebed.server.errors import CommandFailed, WorkloadError
from edgebed.server.workloads.placement.env import SlotDecisions, decode_action
from edgebed.server.workloads.placement.orchestrator import Placement, PlacementConfig
from edgebed.server.workloads.placement.solver.model import CacheState, SlotTasks
from edgebed.testbed import AgentSpec
from tests.helpers import wait_until, workload_on_fleet

CLOUD, GATEWAYS = "pm-cloud", ["pm-gw-a", "pm-gw-b"]
CONFIG = PlacementConfig(run_id="placement-test", preset="tiny", devices_per_gateway=2,
                         repeats=3, noise_draws=1, cloud_rate_bps=4e6, edge_rate_bps=3e6,
                         band_hz=400e3, edge_band_hz=800e3)


@pytest.fixture(scope="module")
def placement(server, tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("zoo"))
    old = os.environ.get("EDGEBED_PLACEMENT_CACHE")
    os.environ["EDGEBED_PLACEMENT_CACHE"] = cache  # the store's trained models stay in the test
    specs = [AgentSpec(CLOUD, power_backend="null", extra_args=("--label", "role=cloud"))]
    specs += [AgentSpec(name, power_backend="null", link=link)
              for name, link in zip(GATEWAYS, ("", "up=16Mbit,down=2Mbit"))]
    try:
        with workload_on_fleet(server, Placement, CONFIG, specs,
                               tmp_path_factory.mktemp("placement-agents")) as running:
            yield running
    finally:
        if old is None:
            os.environ.pop("EDGEBED_PLACEMENT_CACHE", None)
        else:
            os.environ["EDGEBED_PLACEMENT_CACHE"] = old


def test_roles_and_measured_problem(placement):
    pm, _ = placement
    assert pm.cloud == CLOUD and pm.problem_devices == GATEWAYS
    keys = {m.key for m in pm.catalogue}
    assert len(keys) == 8 and all(m.size_bytes > 0 for m in pm.catalogue)
    for times in list(pm.gateway_times.values()) + [pm.edge_times]:
        assert set(times) == keys and all(t > 0 for t in times.values())
    # The second gateway's downlink carries 2 Mbit/s: its R^e is capped below the asked 3 Mbit/s.
    assert pm.rates[GATEWAYS[1]] <= 2e6 < pm.rates[GATEWAYS[0]]
    assert pm.problem.gateways[1].edge_rate_bps == pm.rates[GATEWAYS[1]]
    assert pm.problem.n_tasks == 4
    # Each gateway's S^l in the problem is the capacity it was configured with.
    assert [gw.cache_bytes for gw in pm.problem.gateways] == [
        pm.configure_ins[g].cache_bytes for g in GATEWAYS]
    assert 0 < pm.problem.edge_bandwidth_hz <= CONFIG.edge_band_hz


def _slot(pm, actions, cache=None, seed=0):
    rng = np.random.default_rng(seed)
    n = pm.problem.n_tasks
    tasks = SlotTasks(rng.integers(40_000, 60_001, n).astype(float), np.full(n, 2.0),
                      rng.random(n) < 0.3)
    decision = decode_action(pm.problem, np.asarray(actions, dtype=float))
    return SlotDecisions(pm.problem, tasks, cache or pm.executor.real, decision, 0)


def _actions(n, on_gateway, heavy=False, keep=True):
    a = np.zeros((n, 10))
    a[:, 0] = 1.0 if on_gateway else -1.0
    a[:, 1] = 1.0 if heavy else -1.0
    a[:, 6:10] = 1.0 if keep else -1.0
    return a


def test_a_policy_runs_slots_on_the_agents(placement, server):
    pm, _ = placement
    run = server.call(pm.run(pm.decide("random"), "random", slots=2, episode_seed=3), 300)
    assert len(run.records) == 2 and len(run.decision_ms) == 2
    for record in run.records:
        assert len(record.measured) == len(record.predicted) == pm.problem.n_tasks
        assert all(o.reason in pl.REASONS for o in record.measured)
        for peak, capacity in record.cache_peak.values():
            assert peak <= capacity
        done = [o for o in record.measured if o.completed]
        assert all(0.0 <= o.accuracy <= 1.0 for o in done)
    assert run.rewards == pytest.approx([np.mean([o.accuracy for o in r.measured]) for r in run.records])


def test_models_placed_at_the_gateways_are_really_there(placement, server):
    pm, _ = placement
    slot = _slot(pm, _actions(pm.problem.n_tasks, on_gateway=True), CacheState.empty(2))
    outcome = server.call(pm.executor.run_slot(slot), 120)
    record = pm.executor.records[-1]
    placed = {o.model for o in record.predicted if o.placed}
    for i, held in enumerate(outcome.cache.gateways):
        wanted = {o.model for o in record.predicted if o.gateway == i and o.placed}
        assert held == wanted  # omega kept everything: the real caches hold what was placed
    assert placed and record.model_bytes_moved >= sum(
        m.size_bytes for m in pm.catalogue if m.key in placed)
    assert sum(o.completed for o in outcome.outcomes) >= 1


def test_a_bad_decision_is_refused_and_nothing_changes(placement, server):
    pm, _ = placement
    before = pm.executor.real
    slot = _slot(pm, _actions(pm.problem.n_tasks, on_gateway=True))
    shares = slot.decision.beta_l * 3  # C5: the shares of a gateway add up to more than 1
    bad = SlotDecisions(slot.problem, slot.tasks, slot.cache,
                        type(slot.decision)(**{**slot.decision.__dict__, "beta_l": shares}), 0)
    with pytest.raises(WorkloadError, match="C5"):
        server.call(pm.executor.run_slot(bad), 60)
    unknown = CacheState((frozenset({"nope/light"}), frozenset()), frozenset())
    with pytest.raises(ValueError, match="unknown models"):
        server.call(pm.executor.run_slot(_slot(pm, _actions(4, True), unknown)), 60)
    assert pm.executor.real == before


def _gateway_slot(pm, tasks, held=(), keep=(), wait_s=5.0):
    return pl.SlotIns(run_id=CONFIG.run_id, slot=99, tasks=tasks, held=list(held), keep=list(keep),
                      fetch_wait_s=wait_s)


def _task(model, fetch_key="", index=0, on_gateway=True):
    return pl.TaskIns(index=index, task_type=model.split("/")[0], data_bytes=50_000, deadline_s=3.0,
                      noisy=False, on_gateway=on_gateway, model=model, source_bps=0.0,
                      share=1.0 if on_gateway else 0.0, fetch_key=fetch_key)


def test_a_gateway_refuses_an_unknown_model_before_anything_runs(placement, server):
    pm, _ = placement
    with pytest.raises(CommandFailed, match="unknown model 'digit/huge'"):
        server.call(server.server.call(GATEWAYS[0], pl.SLOT, _gateway_slot(pm, [_task("digit/huge")])), 60)


def _offer(pm, server, key, model, rate_bps):
    from edgebed.models.placement.cache import bytes_tensor, model_bytes
    from edgebed.models.placement.shares import build_net

    info = {m.key: m for m in pm.catalogue}[model]
    blob = model_bytes(build_net(info.depth, info.width, info.hidden, info.pooled, info.classes))
    tensors = {"bytes": bytes_tensor(blob)}
    meta = pl.ModelMeta(model=model, size_bytes=len(blob)).to_meta()
    server.run(lambda: server.server.offer(key, tensors, device=GATEWAYS[0], rate_bps=rate_bps,
                                           meta=meta))


def test_an_overfull_cache_refuses_the_model_and_keeps_what_it_held(placement, server):
    pm, _ = placement
    heavy = sorted(m.key for m in pm.catalogue if m.level == 1)[:2]
    for i, model in enumerate(heavy):
        _offer(pm, server, f"{pm.keys.prefix}test/over/{i}", model, 0.0)
    sizes = {m.key: m.size_bytes for m in pm.catalogue}
    small = pl.ConfigureIns(**{**pm.configure_ins[GATEWAYS[0]].__dict__,
                               "cache_bytes": max(sizes.values()) + 10})
    server.call(server.server.call(GATEWAYS[0], pl.CONFIGURE, small), 120)
    try:
        tasks = [_task(model, f"{pm.keys.prefix}test/over/{i}", index=i) for i, model in enumerate(heavy)]
        res = server.call(server.server.call(GATEWAYS[0], pl.SLOT,
                                             _gateway_slot(pm, tasks, keep=heavy)), 120)
        assert len(res.cache) == 1 and res.peak_bytes <= small.cache_bytes
        assert len(res.refused) == 1 and "does not fit" in res.refused[0]
        reasons = sorted(t.reason for t in res.tasks)
        assert reasons[-1] == "refused" and reasons[0] in ("ok", "late")
    finally:
        server.call(server.server.call(GATEWAYS[0], pl.CONFIGURE, pm.configure_ins[GATEWAYS[0]]), 120)


def test_a_transfer_cut_off_is_never_cached(placement, server):
    pm, _ = placement
    model = sorted(m.key for m in pm.catalogue)[0]
    key = f"{pm.keys.prefix}test/cut"
    _offer(pm, server, key, model, 40e3)  # about 9 s for the model; the gateway waits 1 s
    res = server.call(server.server.call(GATEWAYS[0], pl.SLOT, _gateway_slot(
        pm, [_task(model, key)], keep=[model], wait_s=1.0)), 60)
    assert res.cache == [] and res.fetched_bytes == 0 and res.tasks[0].reason in ("refused", "late-model")
    assert len(res.refused) == 1


def test_a_gateway_that_dies_mid_slot_loses_its_tasks_and_returns_empty(placement, server):
    pm, fleet = placement
    victim = GATEWAYS[1]
    slot = _slot(pm, _actions(pm.problem.n_tasks, on_gateway=True, keep=True), CacheState.empty(2))
    future = asyncio.run_coroutine_threadsafe(pm.executor.run_slot(slot), server.loop)
    # Kill it once its sources are sending (its tasks take about a second at these rates).
    wait_until(lambda: pm.executor._slot > 0 and _busy(server, victim), 30, 0.01, "the slot to start")
    fleet.kill(victim)
    outcome = future.result(timeout=120)
    mine = [o for o in outcome.outcomes if o.gateway == 1]
    others = [o for o in outcome.outcomes if o.gateway == 0]
    assert all(not o.completed and o.reason == "lost" for o in mine)
    assert any(o.completed for o in others)  # the rest of the slot went on
    assert outcome.cache.gateways[1] == frozenset() and victim in pm.executor.lost
    fleet.start([victim])
    wait_until(lambda: victim in server.run(server.server.device_names), 60, what=f"{victim} back")
    again = server.call(pm.executor.run_slot(_slot(pm, _actions(4, True), outcome.cache, seed=1)), 120)
    assert victim not in pm.executor.lost
    assert any(o.completed for o in again.outcomes if o.gateway == 1)


def _busy(server, name):
    return server.run(lambda: server.server.registry.session(name).busy)
