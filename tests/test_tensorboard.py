"""--tensorboard: a run's scalars as TensorBoard event files, written while
the run's events.jsonl grows, and for a fetched run afterwards."""
import shutil
import subprocess
import sys
import time

import pytest

from edgebed.proto.records import Span
from edgebed.results import RunWriter, derived, measured
from edgebed.results.tensorboard import main, scalars, tensorboard_mirror
from tests.helpers import wait_until

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")


def _round(writer, run_id, scheme, rnd, round_s, predicted_s, accuracy):
    """One federated round as feel-train writes it: the devices' spans, then
    its ``feel_round`` event."""
    for i, device in enumerate(("feel-0", "feel-1")):
        for phase, joules in (("compute", 1.5 + i), ("upload", 0.25)):
            writer.event(Span(run_id=f"{run_id}-K2-iid-{scheme}", phase=phase, device=device,
                              start_s=10.0 * rnd, end_s=10.0 * rnd + 0.5, round=rnd,
                              energy_j=joules, power_backend="utilization",
                              provenance="estimated"))
    writer.event({"phase": "feel_round", "scheme": scheme, "partition": "iid", "K": 2,
                  "round": rnd, "elapsed_s": rnd * round_s, "accuracy": accuracy, "loss": 1.0,
                  "round_s": round_s, "predicted_s": predicted_s, "global_batch": 64,
                  "arrived": 2})


def test_the_mirror_follows_a_run_and_adds_its_summary(tmp_path):
    logdir = tmp_path / "tb"
    with RunWriter("feel-train", root=tmp_path / "results", argv=[]) as writer:
        with tensorboard_mirror(writer.path, str(logdir), poll_s=0.05) as mirror:
            for rnd in range(4):
                _round(writer, writer.run_id, "proposed", rnd, 2.0, 1.6, 0.5 + 0.1 * rnd)
            # Live: scalars appear while the run goes on, before it closes.
            wait_until(lambda: "accuracy/proposed iid" in scalars(mirror.logdir), 20, 0.1,
                       "accuracy scalars during the run")
            writer.event({"phase": "decision", "run_id": writer.run_id, "tag": "judba",
                          "provenance": "modeled", "T_pred_s": 4.0, "T_meas_s": 5.0,
                          "per_device": [{"device": "feel-0", "finish_pred_s": 2.0,
                                          "finish_s": 2.5}]})
            writer.summary({"accuracy": measured(0.8), "T_rel_error": derived(0.25),
                            "rounds": measured(4)})
    assert mirror.logdir == logdir / "feel-train" / writer.run_id
    found = scalars(mirror.logdir)
    assert found["accuracy/proposed iid"] == [(r, pytest.approx(0.5 + 0.1 * r)) for r in range(4)]
    assert found["round_time_s/proposed iid K=2/measured"][0] == (0, 2.0)
    assert found["round_time_s/proposed iid K=2/predicted"][0] == (0, pytest.approx(1.6))
    assert found["prediction_error/round time/proposed iid K=2"][0][1] == pytest.approx(0.25)
    assert found["prediction_error/completion latency/judba"] == [(0, 0.25)]
    assert found["prediction_error/finish time/feel-0/judba"] == [(0, 0.25)]
    # Energy per round: every span of the round, over devices and per device.
    per_round = found["energy_j_per_round/K2-iid-proposed"]
    assert [step for step, _ in per_round] == [0, 1, 2, 3]
    assert all(value == pytest.approx(1.5 + 2.5 + 0.5) for _, value in per_round)
    assert found["energy_j_per_round/K2-iid-proposed/feel-1"][0][1] == pytest.approx(2.75)
    assert found["summary/accuracy"] == [(0, pytest.approx(0.8))]
    assert found["summary/T_rel_error"] == [(0, 0.25)]
    assert "summary/rounds" not in found


def test_a_fetched_run_converts_afterwards_and_a_non_run_is_refused(tmp_path, capsys):
    with RunWriter("feel-train", root=tmp_path / "results", argv=[]) as writer:
        _round(writer, writer.run_id, "model-based", 1, 3.0, 2.0, 0.7)
    assert main([str(writer.path), str(tmp_path / "tb")]) == 0
    found = scalars(tmp_path / "tb" / "feel-train" / writer.run_id)
    assert found["accuracy/model-based iid"] == [(1, pytest.approx(0.7))]
    assert main([str(tmp_path), str(tmp_path / "tb")]) == 2
    assert "no events.jsonl" in capsys.readouterr().err


@pytest.mark.slow
def test_edgebed_bench_writes_tensorboard_scalars_of_a_local_run(tmp_path):
    bench = shutil.which("edgebed-bench")
    if bench is None:
        pytest.skip("edgebed-bench is not installed (pip install -e '.[dev]')")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "edgebed.benchmarks.cli", "links", "--quick",
                           "--agents", "2", "--no-quota", "--results", str(tmp_path / "results"),
                           "--tensorboard", str(tmp_path / "tb")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "TensorBoard scalars in" in proc.stdout
    (run_dir,) = (tmp_path / "tb" / "links").iterdir()
    found = scalars(run_dir)
    assert any(tag.startswith("energy_j_per_round/") for tag in found), sorted(found)
    assert time.monotonic() - started < 300
