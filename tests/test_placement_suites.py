"""The three placement suites end to end at a tiny size: placement-train saves its policies,
placement-resources and placement-rates load them with --policies, and every summary key
states its provenance (slow: ``pytest -m slow``). The numbers are not checked here (a tiny
run learns nothing)."""
import json

import pytest
import torch

from edgebed.benchmarks import cli
from edgebed.benchmarks.parallel import parallel_map
from edgebed.server.workloads.placement.agents import SCHEMES

TINY = ["--models", "tiny", "--gateways", "1", "--devices", "2", "--episodes", "2", "--slots", "3"]
#: What both sweep suites record besides their curves (placement_resources.sweep_record).
RECORD = ("eval_episodes", "retrain", "policies", "models", "profile", "settings", "quick", "elapsed_s")


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One tiny model zoo for the module (the first suite trains it)."""
    return str(tmp_path_factory.mktemp("zoo"))


def _run(suite, root, cache, *argv):
    common = ["--results", str(root), "--run-id", "t", "--cache-dir", cache, "--agents", "quick"]
    assert cli.main([suite, *TINY, *common, *argv]) == 0
    summary = json.loads((root / suite / "t" / "summary.json").read_text())
    provenance = summary.pop("provenance")
    for key in summary:
        assert key in provenance or any(p.startswith(f"{key}.") for p in provenance), key
    return summary


@pytest.mark.slow  # about 40 s on two cores: a tiny model zoo and six SB3 agents
def test_train_then_sweeps_on_its_policies(tmp_path, cache):
    train = _run("placement-train", tmp_path, cache, "--runs", "2", "--workers", "2")
    assert set(train["final_reward"]) == set(SCHEMES)
    assert {s: len(v) for s, v in train["final_runs"].items()} == {s: 2 for s in SCHEMES}
    assert train["paper_margins"] == {"over_ddpg": 0.315, "over_random": 0.745}
    assert train["order_ok"] == (
        train["final_reward"]["td3"] > train["final_reward"]["ddpg"] > train["final_reward"]["random"]
    )
    policies = tmp_path / "placement-train" / "t" / "policies"
    median = json.loads((policies / "median.json").read_text())
    assert sorted(median) == sorted(SCHEMES)

    sweep = ["--policies", str(policies), "--eval-episodes", "1"]
    resources = _run("placement-resources", tmp_path, cache, *sweep)
    rates = _run("placement-rates", tmp_path, cache, *sweep)
    for summary in (resources, rates):
        assert set(RECORD) <= set(summary)
        assert summary["retrain"] is False
        assert summary["policies"] == {s: str(policies / median[s]) for s in SCHEMES}
    assert set(resources["accuracy_vs"]) == {"B_hz", "S_l_bytes", "C_l_hz", "B_e_hz", "S_e_bytes", "C_e_hz"}
    for name, curve in resources["accuracy_vs"].items():
        assert all(len(curve[s]) == len(curve["x"]) for s in SCHEMES), name
    assert set(rates["placed_vs"]) == {"R_c_bps", "R_e_bps"}
    for name, counts in rates["by_scheme"]["td3"].items():
        assert all(len(v) == len(counts["x"]) for v in counts.values()), name


def test_parallel_map_keeps_the_order_with_spawned_workers():
    assert list(parallel_map(abs, [-3, 1, -2, 5], 2, start_method="spawn")) == [3, 1, 2, 5]
    assert list(parallel_map(abs, [-3], 2, start_method="spawn")) == [3]  # one task: in this process
    with pytest.raises(ValueError, match="at least 1"):
        list(parallel_map(abs, [1], 0))
