"""The six suites that need no devices: their presets resolve and their summaries state every
key's provenance (what their options refuse: test_cli_options.py)."""
import argparse
import dataclasses
import json

import pytest
import torch

from edgebed.benchmarks import cli
from edgebed.benchmarks.options import resolve

SUITES = ("tl-compression", "tl-solver", "feel-solver", "feel-latency", "split-profile", "split-game")


def _parse(module, argv):
    parser = argparse.ArgumentParser()
    cli.add_common_arguments(parser)
    module.add_arguments(parser)
    return parser.parse_args(argv)


OVERRIDES = [
    ("tl-compression", ["--cnn-epochs", "3"], "cnn_epochs", 3),
    ("tl-solver", ["--draws", "7"], "draws", 7),
    ("feel-solver", ["--k-values", "2,5"], "k_values", [2, 5]),
    ("feel-latency", ["--models", "cnn"], "models", ["cnn"]),
    ("split-profile", ["--rounds", "4"], "rounds", 4),
    ("split-game", ["--n-values", "5,10"], "n_values", [5, 10]),
]


@pytest.mark.parametrize("suite, argv, field, value", OVERRIDES)
def test_presets_resolve_and_an_explicit_option_overrides_quick(suite, argv, field, value):
    module = cli.import_suite(suite)
    presets = module.PRESETS
    assert presets.quick != presets.full
    assert resolve(_parse(module, []), presets) == presets.full
    assert resolve(_parse(module, ["--quick"]), presets) == presets.quick
    assert getattr(presets.quick, field) != value
    opts = resolve(_parse(module, ["--quick", *argv]), presets)
    assert opts == dataclasses.replace(presets.quick, **{field: value})
    assert resolve(_parse(module, argv), presets) == dataclasses.replace(presets.full, **{field: value})


def _summary(root, suite):
    return json.loads((root / suite / "t" / "summary.json").read_text())


def _assert_every_key_has_provenance(summary):
    provenance = summary.pop("provenance")
    for key in summary:
        assert key in provenance or any(p.startswith(f"{key}.") for p in provenance), key
    for key, label in provenance.items():
        assert label.split(":")[0] in ("measured", "estimated", "modeled", "derived", "given"), key


TINY = [
    ("tl-solver", ["--draws", "2", "--timing-repeats", "1", "--max-timing-devices", "10", "--workers", "1"],
     {"cost_vs_M": "modeled", "solve_ms_vs_M.median_ms": "measured", "proposed_le_baselines": "derived",
      "draws": "given"}),
    ("feel-solver", ["--instances", "1", "--k-values", "2", "--timing-repeats", "1", "--workers", "1"],
     {"max_rel_gap": "derived", "solve_ms_K100": "measured", "K": "given"}),
]


@pytest.mark.parametrize("suite, argv, expected", TINY)
def test_a_tiny_modeled_run_tags_every_summary_key(suite, argv, expected, tmp_path):
    assert cli.main([suite, *argv, "--results", str(tmp_path), "--run-id", "t"]) == 0
    summary = _summary(tmp_path, suite)
    for key, word in expected.items():
        assert summary["provenance"][key].split(":")[0] == word, key
    _assert_every_key_has_provenance(summary)


@pytest.fixture
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("suite", SUITES)
def test_quick_run_writes_a_summary_with_every_key_tagged(suite, tmp_path, _restore_threads):
    assert cli.main([suite, "--quick", "--results", str(tmp_path), "--run-id", "t"]) == 0
    summary = _summary(tmp_path, suite)
    _assert_every_key_has_provenance(summary)
    if suite == "split-game":  # modeled, so no host can move it
        assert summary["uai_vs_gtpos_gap"] <= 0.10
