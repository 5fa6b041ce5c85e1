"""edgebed-bench: suite registry, lazy import, --list, common options (edgebed.benchmarks.cli)."""
import importlib
import importlib.util
import logging
import sys
import textwrap
import types

import edgebed.benchmarks
import pytest
from edgebed.benchmarks import cli


@pytest.fixture(autouse=True)
def _restore_root_log_level():
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)


def _fake_suite(monkeypatch, module_name, doc="Fake suite for tests.\n\nMore text.", rc=0):
    """Register a suite module in sys.modules and return the list its run() appends to."""
    calls = []
    mod = types.ModuleType(f"edgebed.benchmarks.{module_name}", doc)

    def add_arguments(parser):
        parser.add_argument("--rounds", type=int, default=1)

    def run(args):
        calls.append(args)
        return rc

    mod.add_arguments = add_arguments
    mod.run = run
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return calls


@pytest.fixture
def suites(monkeypatch):
    registry = {}
    monkeypatch.setattr(cli, "SUITES", registry)
    return registry


def test_real_registry_maps_names_to_modules():
    """Suites come from the workload registry: each named <workload>-* (or a
    runtime suite), each a module under edgebed.benchmarks that exists."""
    from edgebed.workloads import WORKLOADS

    assert cli.SUITES["quickstart"] == "edgebed.benchmarks.quickstart"
    assert cli.SUITES["tl-testbed"] == "edgebed.benchmarks.tl_testbed"
    for workload in WORKLOADS:
        for suite in workload.suites:
            assert workload.name == "runtime" or suite.startswith(workload.name + "-")
    for name, module in cli.SUITES.items():
        assert "_" not in name
        assert module == "edgebed.benchmarks." + name.replace("-", "_")
        assert importlib.util.find_spec(module) is not None


def test_unknown_suite_exits_2_listing_known_ones(suites, capsys):
    suites.update({"alpha": "edgebed.benchmarks.alpha", "beta-two": "edgebed.benchmarks.beta_two"})
    assert cli.main(["nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown suite 'nope'" in err
    assert "alpha" in err and "beta-two" in err


def test_no_suite_exits_2(suites, capsys):
    suites["alpha"] = "edgebed.benchmarks.alpha"
    assert cli.main([]) == 2
    assert "alpha" in capsys.readouterr().err


def test_top_level_help_does_not_import_suites(suites, capsys, monkeypatch):
    suites["alpha"] = "edgebed.benchmarks.no_such_module_for_help"
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "edgebed-bench" in out and "alpha" in out


def test_list_survives_missing_and_broken_modules(suites, monkeypatch, tmp_path, capsys):
    _fake_suite(monkeypatch, "fake_ok")
    # A real module file that raises on import, found through the package path.
    (tmp_path / "fake_broken_cli_test.py").write_text("raise RuntimeError('kaput')\n")
    monkeypatch.setattr(edgebed.benchmarks, "__path__",
                        list(edgebed.benchmarks.__path__) + [str(tmp_path)])
    importlib.invalidate_caches()
    suites.update({
        "fake-ok": "edgebed.benchmarks.fake_ok",
        "ghost": "edgebed.benchmarks.no_such_suite_module_xyz",
        "broken": "edgebed.benchmarks.fake_broken_cli_test",
    })
    try:
        assert cli.main(["--list"]) == 0
    finally:
        sys.modules.pop("edgebed.benchmarks.fake_broken_cli_test", None)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["fake-ok", "Fake", "suite", "for", "tests."]
    assert lines[1].startswith("ghost") and "ModuleNotFoundError" in lines[1]
    assert "no_such_suite_module_xyz" in lines[1]
    assert lines[2].startswith("broken") and "RuntimeError: kaput" in lines[2]


def test_only_the_chosen_suite_is_imported(suites, monkeypatch):
    calls = _fake_suite(monkeypatch, "fake_ok")
    suites.update({"fake-ok": "edgebed.benchmarks.fake_ok",
                   "ghost": "edgebed.benchmarks.no_such_suite_module_xyz"})
    assert cli.main(["fake-ok"]) == 0
    assert len(calls) == 1


@pytest.mark.parametrize("typed", ["split-thing", "split_thing"])
def test_dash_and_underscore_names_map_to_underscore_module(suites, monkeypatch, typed):
    calls = _fake_suite(monkeypatch, "split_thing")
    suites["split-thing"] = "edgebed.benchmarks.split_thing"
    assert cli.main([typed]) == 0
    assert calls[0].suite == "split-thing"
    assert cli.suite_module_name("split-thing") == "edgebed.benchmarks.split_thing"


def test_common_and_suite_options_reach_the_suite(suites, monkeypatch, tmp_path):
    calls = _fake_suite(monkeypatch, "fake_ok")
    suites["fake-ok"] = "edgebed.benchmarks.fake_ok"
    rc = cli.main(["fake-ok", "--results", str(tmp_path), "--run-id", "r1", "--quick",
                   "--seed", "42", "-vv", "--rounds", "9"])
    assert rc == 0
    args = calls[0]
    assert (args.results, args.run_id, args.quick, args.seed, args.verbose, args.rounds) == (
        str(tmp_path), "r1", True, 42, 2, 9)
    assert logging.getLogger().level == logging.DEBUG


def test_defaults(suites, monkeypatch):
    calls = _fake_suite(monkeypatch, "fake_ok")
    suites["fake-ok"] = "edgebed.benchmarks.fake_ok"
    assert cli.main(["fake-ok"]) == 0
    args = calls[0]
    assert (args.results, args.run_id, args.quick, args.seed, args.verbose, args.rounds) == (
        "results", None, False, 0, 0, 1)


def test_common_options_may_precede_the_suite(suites, monkeypatch):
    calls = _fake_suite(monkeypatch, "fake_ok")
    suites["fake-ok"] = "edgebed.benchmarks.fake_ok"
    assert cli.main(["--seed", "3", "fake-ok", "--quick"]) == 0
    assert calls[0].seed == 3 and calls[0].quick


def test_nonzero_return_propagates(suites, monkeypatch):
    _fake_suite(monkeypatch, "fake_fail", rc=3)
    suites["fail"] = "edgebed.benchmarks.fake_fail"
    assert cli.main(["fail"]) == 3


def test_bad_option_returns_2_and_suite_help_returns_0(suites, monkeypatch, capsys):
    calls = _fake_suite(monkeypatch, "fake_ok")
    suites["fake-ok"] = "edgebed.benchmarks.fake_ok"
    assert cli.main(["fake-ok", "--no-such-option"]) == 2
    assert cli.main(["fake-ok", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--rounds" in out and "--seed" in out and "Fake suite for tests." in out
    assert calls == []


def test_registered_but_missing_module_exits_nonzero(suites, capsys):
    suites["ghost"] = "edgebed.benchmarks.no_such_suite_module_xyz"
    assert cli.main(["ghost"]) == 1
    assert "no_such_suite_module_xyz" in capsys.readouterr().err


def test_suite_module_source_is_importable_from_package_path(suites, monkeypatch, tmp_path):
    """A suite file next to the others is found by the real import machinery."""
    (tmp_path / "fake_file_suite_cli_test.py").write_text(textwrap.dedent('''
        """File-based fake suite."""
        def add_arguments(parser):
            parser.add_argument("--size", type=int, default=1)
        def run(args):
            return args.size
    '''))
    monkeypatch.setattr(edgebed.benchmarks, "__path__",
                        list(edgebed.benchmarks.__path__) + [str(tmp_path)])
    importlib.invalidate_caches()
    suites["file-suite"] = "edgebed.benchmarks.fake_file_suite_cli_test"
    try:
        assert cli.main(["file-suite", "--size", "5"]) == 5
    finally:
        sys.modules.pop("edgebed.benchmarks.fake_file_suite_cli_test", None)


def test_bad_input_from_a_suite_exits_2_with_its_message(suites, monkeypatch, capsys):
    mod = types.ModuleType("edgebed.benchmarks.bad_input", "Raises on bad input.")

    def run(args):
        raise ValueError("unknown split model 'nosuch'")

    mod.run = run
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    suites["bad-input"] = "edgebed.benchmarks.bad_input"
    assert cli.main(["bad-input"]) == 2
    assert "bad-input: error: unknown split model 'nosuch'" in capsys.readouterr().err


def test_split_config_rejects_an_unknown_model_before_anything_runs():
    from edgebed.server.workloads.split.orchestrator import SplitConfig
    with pytest.raises(ValueError, match="unknown split model 'nosuch'; known models: lenet"):
        SplitConfig(model="nosuch")



def test_every_workloads_testbed_suite_runs_on_devices_and_gives_quickstart_a_pass():
    from edgebed.workloads import WORKLOADS
    for workload in WORKLOADS:
        if not workload.testbed:
            continue
        assert workload.testbed in workload.suites
        module = importlib.import_module(cli.SUITES[workload.testbed])
        for name in ("experiment", "quick_pass", "Options", "PRESETS"):
            assert hasattr(module, name), f"{module.__name__} has no {name}"
