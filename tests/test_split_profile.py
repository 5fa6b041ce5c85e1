"""split-profile runs end to end on a tiny configuration and writes its keys."""
import json

import torch

from edgebed.benchmarks import cli
from edgebed.models.split.delay_model import DelayModel


def test_split_profile_tiny_run_writes_r2_mae_and_the_model(tmp_path, monkeypatch):
    monkeypatch.setitem(cli.SUITES, "split-profile", "split_profile")
    threads = torch.get_num_threads()
    try:
        rc = cli.main(["split-profile", "--results", str(tmp_path), "--run-id", "t", "--models", "lenet",
                       "--rounds", "2", "--repeats", "1", "--sweep-repeats", "1", "--warmup", "0",
                       "--max-macs", "1e6", "--sweep",
                       "conv=4,fc=4,relu=4,pool=4,flatten=4,dwconv=0,norm=0,dropout=0,add=0"])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    run = tmp_path / "split-profile" / "t"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_layers"] == 12 and isinstance(summary["r2"], float) and summary["mae_ms"] >= 0
    assert summary["sweep_rows"] == {"total": 20, "holdout": 5}
    assert {"r2", "mae_ms"} <= set(summary["provenance"])
    model = DelayModel.from_dict(json.loads((run / "delay_model.json").read_text()))
    assert set(model.fits) == {"conv", "fc", "relu", "pool", "flatten"}
    assert (run / "layers.csv").read_text().count("\n") == 13


def test_split_profile_refuses_a_sweep_that_misses_a_kind(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(cli.SUITES, "split-profile", "split_profile")
    threads = torch.get_num_threads()
    try:
        rc = cli.main(["split-profile", "--results", str(tmp_path), "--models", "lenet", "--sweep", "pool=0"])
    finally:
        torch.set_num_threads(threads)
    assert rc == 2 and "pool" in capsys.readouterr().err
    assert not (tmp_path / "split-profile").exists()
