"""The six suites that need no devices: their options refuse what makes no sense, their
presets resolve, and their summaries state every key's provenance."""
import argparse
import dataclasses
import json
import typing

import pytest
import torch

from edgebed.benchmarks import cli
from edgebed.benchmarks.options import resolve

SUITES = ("tl-compression", "tl-solver", "feel-solver", "feel-latency", "split-profile", "split-game")

#: Per suite, every numeric option: the values beyond 0, -1, nan and inf it must refuse, and
#: whether 0 makes sense (then 0 is accepted and not tried).
ZERO_OK = object()
NUMERIC: typing.Dict[str, typing.Dict[str, tuple]] = {
    "tl-compression": {
        "image-size": ("4",), "max-samples": (), "lambdas": ("1,0", "4,-8"), "devices": (),
        "shards-per-device": (), "ae-epochs": (), "cnn-epochs": (), "batch-size": (), "ae-width": (),
        "threads": ()},
    "tl-solver": {"draws": (), "workers": (), "timing-repeats": (), "max-timing-devices": ()},
    "feel-solver": {"instances": (), "k-values": ("2,0",), "timing-repeats": (), "workers": ()},
    "feel-latency": {
        "batches": ("1,0", "1,nan"), "repeats": (), "warmup": (ZERO_OK,), "model-warmup-s": (ZERO_OK,),
        "threads": (), "num-classes": ("1",)},
    "split-profile": {
        "input-size": ("32",), "threads": (), "rounds": (), "repeats": (), "sweep-repeats": (),
        "warmup": (ZERO_OK,), "max-macs": ("10",), "anchor-fraction": (ZERO_OK, "1.5"),
        "holdout-fraction": (ZERO_OK, "0.75", "1")},
    "split-game": {
        "repeats": (), "n-values": ("5,0",), "bandwidth-points": ("1",), "devices": (),
        "wake-prob": ("1.5",), "neighbours": (ZERO_OK,), "input-size": ("32",)},
}


def _bad_values(extra: tuple) -> typing.List[str]:
    values = [] if ZERO_OK in extra else ["0"]
    return values + ["-1", "nan", "inf"] + [v for v in extra if v is not ZERO_OK]


BAD = [(suite, flag, value) for suite, flags in NUMERIC.items() for flag, extra in flags.items()
       for value in _bad_values(extra)]


@pytest.mark.parametrize("suite, flag, value", BAD)
def test_a_value_that_makes_no_sense_is_refused_naming_the_option(suite, flag, value, tmp_path, capsys):
    rc = cli.main([suite, f"--{flag}", value, "--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"--{flag}" in err
    assert "Traceback" not in err
    assert not (tmp_path / suite).exists()


def _numeric(tp: typing.Any) -> bool:
    if typing.get_origin(tp) is typing.Union:
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if typing.get_origin(tp) in (list, tuple):
        tp = typing.get_args(tp)[0]
    return tp in (int, float)


@pytest.mark.parametrize("suite", SUITES)
def test_the_table_lists_every_numeric_option(suite):
    options = cli.import_suite(suite).Options
    hints = typing.get_type_hints(options)
    numeric = {f.name.replace("_", "-") for f in dataclasses.fields(options) if _numeric(hints[f.name])}
    assert numeric == set(NUMERIC[suite])


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
