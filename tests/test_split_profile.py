"""split-profile runs end to end on a tiny configuration and writes its keys."""
import json

import pytest
import torch

from edgebed.benchmarks import cli
from edgebed.models.split.delay_model import DelayModel

TINY_SWEEP = "conv=4,fc=4,relu=4,pool=4,flatten=4,dwconv=0,norm=0,dropout=0,add=0"


@pytest.fixture(autouse=True)
def _restore_threads():
    """The suite sets torch's thread count; give the other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_split_profile_tiny_run_writes_r2_mae_and_the_model(tmp_path):
    rc = cli.main(["split-profile", "--results", str(tmp_path), "--run-id", "t", "--models", "lenet",
                   "--rounds", "2", "--repeats", "1", "--sweep-repeats", "1", "--warmup", "0",
                   "--max-macs", "1e6", "--sweep", TINY_SWEEP])
    assert rc == 0
    run = tmp_path / "split-profile" / "t"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_layers"] == 12
    assert isinstance(summary["r2"], float)
    assert summary["mae_ms"] >= 0
    assert summary["sweep_rows"] == {"total": 20, "holdout": 5}
    provenance = summary["provenance"]
    assert provenance["r2"].startswith("derived") and provenance["mae_ms"].startswith("derived")
    assert provenance["model_ms.lenet.forward_measured"].startswith("measured")
    assert provenance["model_ms.lenet.layers_predicted_sum"].startswith("modeled")
    model = DelayModel.from_dict(json.loads((run / "delay_model.json").read_text()))
    assert set(model.fits) == {"conv", "fc", "relu", "pool", "flatten"}
    assert (run / "layers.csv").read_text().count("\n") == 13


def test_split_profile_sweep_names_only_the_kinds_it_changes():
    from edgebed.benchmarks import split_profile as suite

    quick = suite.sweep_counts(suite.PRESETS.quick.sweep)
    assert sum(quick.values()) == 328 and list(quick) == list(suite.QUICK_SWEEP)
    assert sum(suite.sweep_counts(suite.PRESETS.full.sweep).values()) == 710
    assert suite.sweep_counts(("conv=3", " fc = 2")) == {"conv": 3, "fc": 2}


def test_split_profile_refuses_a_sweep_that_misses_a_kind(tmp_path, capsys):
    rc = cli.main(["split-profile", "--results", str(tmp_path), "--models", "lenet", "--sweep", "pool=0"])
    assert rc == 2
    assert "pool" in capsys.readouterr().err
    assert not (tmp_path / "split-profile").exists()


@pytest.mark.parametrize("sweep", ["lstm=3", "conv", "conv=-1", "conv=x"])
def test_split_profile_refuses_a_malformed_sweep(tmp_path, capsys, sweep):
    rc = cli.main(["split-profile", "--results", str(tmp_path), "--sweep", sweep])
    assert rc == 2
    assert "--sweep" in capsys.readouterr().err
