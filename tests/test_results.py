"""RunWriter files, progress bars and text tables (edgebed.results)."""
import argparse
import csv
import io
import json
import math
import platform
import re
from dataclasses import dataclass

import numpy as np
import pytest
from edgebed.benchmarks import plots
from edgebed.results import (
    RunWriter,
    derived,
    format_table,
    given,
    measured,
    modeled,
    print_table,
    progress,
    progress_enabled,
    to_jsonable,
    weakest,
)
from edgebed.proto.records import Span


def _span(phase="train", device="dev0", start=1.0, end=1.5, **kw):
    return Span(run_id="r1", phase=phase, device=device, start_s=start, end_s=end, **kw)


@pytest.fixture
def writer(tmp_path):
    with RunWriter("unit", config={"rounds": 3}, root=tmp_path, argv=["edgebed-bench", "unit"]) as w:
        yield w


# ----------------------------------------------------------------- layout and config


def test_run_directory_layout_and_run_id_format(tmp_path):
    a = RunWriter("my-suite", root=tmp_path)
    b = RunWriter("my-suite", root=tmp_path)
    assert a.path.parent == tmp_path / "my-suite"
    assert a.path.name == a.run_id
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", a.run_id)
    assert a.run_id != b.run_id
    assert (a.path / "config.json").is_file()


def test_config_records_config_versions_host_and_command(tmp_path):
    @dataclass
    class Cfg:
        rounds: int = 5
        lr: float = 0.01

    w = RunWriter("unit", config=Cfg(), root=tmp_path, run_id="fixed",
                  argv=["edgebed-bench", "unit", "--quick"])
    cfg = json.loads((tmp_path / "unit" / "fixed" / "config.json").read_text())
    assert cfg["suite"] == "unit" and cfg["run_id"] == "fixed"
    assert cfg["config"] == {"rounds": 5, "lr": 0.01}
    assert cfg["command"] == ["edgebed-bench", "unit", "--quick"]
    versions = cfg["versions"]
    assert set(versions) == {"python", "torch", "grpcio", "protobuf", "numpy", "edgebed"}
    assert versions["python"] == platform.python_version()
    assert versions["numpy"] == np.__version__
    assert versions["edgebed"]
    host = cfg["host"]
    for key in ("hostname", "platform", "cpu_model", "cpu_cores_logical", "ram_bytes"):
        assert host[key], key
    assert w.config == cfg


def test_config_from_namespace_and_from_args(tmp_path):
    args = argparse.Namespace(suite="unit", results=str(tmp_path), run_id="ns", quick=True,
                              seed=7, verbose=0)
    w = RunWriter.from_args(args)
    assert w.path == tmp_path / "unit" / "ns"
    cfg = json.loads((w.path / "config.json").read_text())
    assert cfg["config"]["seed"] == 7 and cfg["config"]["quick"] is True


def test_explicit_run_id_never_mixes_runs(tmp_path):
    RunWriter("unit", root=tmp_path, run_id="same")
    with pytest.raises(ValueError, match="already exists"):
        RunWriter("unit", root=tmp_path, run_id="same")


@pytest.mark.parametrize("bad", ["../up", "a/b", "", ".hidden", "-x"])
def test_bad_names_rejected(tmp_path, bad):
    with pytest.raises(ValueError):
        RunWriter("unit", root=tmp_path, run_id=bad)
    with pytest.raises(ValueError):
        RunWriter(bad, root=tmp_path)


# ----------------------------------------------------------------- events


def test_events_one_line_per_span_flushed_immediately(writer):
    writer.event(_span("train"))
    writer.event(_span("upload", bytes=1024, extra={"rate_bps": np.float32(8.0)}))
    writer.event({"kind": "decision", "predicted_s": np.float64(0.5), "devices": np.arange(2)})
    # Read while the writer is still open: every line is already on disk.
    lines = (writer.path / "events.jsonl").read_text().splitlines()
    assert len(lines) == 3
    first, second, third = (json.loads(line) for line in lines)
    assert first["phase"] == "train" and first["device"] == "dev0"
    assert first["duration_s"] == pytest.approx(0.5)
    assert second["bytes"] == 1024 and second["extra"] == {"rate_bps": 8.0}
    assert third == {"kind": "decision", "predicted_s": 0.5, "devices": [0, 1]}


def test_event_nonfinite_becomes_null_and_bad_types_rejected(writer):
    writer.event({"energy_j": float("nan")})
    assert json.loads((writer.path / "events.jsonl").read_text()) == {"energy_j": None}
    with pytest.raises(TypeError):
        writer.event(42)


def test_event_returns_the_line_it_wrote(writer):
    """A caller passing the record on (a run's watchers) sends what the file holds."""
    first = writer.event(_span("train", energy_j=float("nan")))
    second = writer.event({"kind": "decision", "predicted_s": np.float64(0.5)})
    assert (writer.path / "events.jsonl").read_text().splitlines() == [first, second]
    assert json.loads(first)["energy_j"] is None


def test_event_after_close_raises(tmp_path):
    w = RunWriter("unit", root=tmp_path)
    w.event({"a": 1})
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.event({"a": 2})


# ----------------------------------------------------------------- tables


def test_table_union_of_columns_in_first_seen_order(writer):
    rows = [
        {"device": "pi", "latency_s": 0.25},
        {"device": "nano", "energy_j": 1.5, "latency_s": np.float64(0.125)},
        {"device": "gpu", "extra": {"k": [1, 2]}, "ok": True, "none": None},
    ]
    path = writer.table("per_device", rows)
    assert path == writer.path / "per_device.csv"
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["device", "latency_s", "energy_j", "extra", "ok", "none"]
        got = list(reader)
    assert got[0] == {"device": "pi", "latency_s": "0.25", "energy_j": "", "extra": "",
                      "ok": "", "none": ""}
    assert got[1]["latency_s"] == "0.125" and got[1]["energy_j"] == "1.5"
    assert json.loads(got[2]["extra"]) == {"k": [1, 2]}
    assert got[2]["ok"] == "True" and got[2]["none"] == ""


def test_table_explicit_columns_come_first(writer):
    path = writer.table("t", [{"b": 1, "a": 2, "c": 3}], columns=["c", "a"])
    assert path.read_text().splitlines()[0] == "c,a,b"


# ----------------------------------------------------------------- summary


def test_summary_written_and_numpy_converted(writer):
    path = writer.summary({
        "accuracy": measured(np.float32(0.5)), "rounds": given(np.int64(3)),
        "per_round": measured(np.array([1.0, 2.0])), "ok": measured(np.bool_(True)),
        "nested": measured({"p50_s": 0.1}),
    })
    assert path == writer.path / "summary.json"
    data = json.loads(path.read_text())
    assert {k: v for k, v in data.items() if k != "provenance"} == {
        "accuracy": 0.5, "rounds": 3, "per_round": [1.0, 2.0], "ok": True, "nested": {"p50_s": 0.1},
    }


def test_summary_provenance_is_derived_from_the_tagged_values(writer):
    path = writer.summary({
        "T_pred_s": modeled(1.0, "eq. 8"), "T_s": measured(1.1),
        "error": derived(0.1, "measured vs modeled"), "scheme": given("judba"),
        "by_scheme": {"equal": {"T_s": measured(2.0), "T_pred_s": modeled(1.9)}},
    })
    data = json.loads(path.read_text())
    assert data["provenance"] == {
        "T_pred_s": "modeled: eq. 8", "T_s": "measured", "error": "derived: measured vs modeled",
        "scheme": "given", "by_scheme.equal.T_s": "measured", "by_scheme.equal.T_pred_s": "modeled",
    }
    assert data["by_scheme"] == {"equal": {"T_s": 2.0, "T_pred_s": 1.9}}


def test_summary_refuses_a_value_without_provenance_or_a_hand_written_one(writer):
    with pytest.raises(ValueError, match="'latency_s' has no provenance"):
        writer.summary({"latency_s": 0.5})
    with pytest.raises(ValueError, match="derived from its tagged values"):
        writer.summary({"provenance": {"x": "measured"}, "x": measured(1)})
    assert not (writer.path / "summary.json").exists()


def test_weakest_provenance_of_mixed_spans():
    assert weakest(["measured", "estimated", "measured"]) == "estimated"
    assert weakest(["measured"]) == "measured"
    assert weakest(["estimated", "modeled"]) == "modeled"


@pytest.mark.parametrize("value,key", [
    ({"latency_s": measured(float("nan"))}, "latency_s"),
    ({"energy_j": measured(np.float64("inf"))}, "energy_j"),
    ({"per_device": measured({"pi": {"rate_bps": -math.inf}})}, "per_device.pi.rate_bps"),
    ({"curve": measured([1.0, np.nan])}, r"curve\[1\]"),
])
def test_summary_rejects_nonfinite_naming_the_key(writer, value, key):
    with pytest.raises(ValueError, match=key):
        writer.summary(value)
    assert not (writer.path / "summary.json").exists()


def test_summary_rejects_unserializable_naming_the_key(writer):
    with pytest.raises(TypeError, match="handle"):
        writer.summary({"handle": measured(object())})


def test_to_jsonable_lenient_mode_stringifies_unknown_objects(tmp_path):
    assert to_jsonable({"p": tmp_path, "s": {2, 1}, "t": (1, "a")}) == {
        "p": str(tmp_path), "s": [1, 2], "t": [1, "a"]}


# ----------------------------------------------------------------- error.txt, plots


def test_error_txt_written_and_exception_reraised(tmp_path):
    with pytest.raises(RuntimeError, match="boom"), RunWriter(
        "unit", root=tmp_path, run_id="bad"
    ) as w:
        w.event({"before": 1})
        raise RuntimeError("boom")
    text = (tmp_path / "unit" / "bad" / "error.txt").read_text()
    assert "Traceback" in text and "RuntimeError: boom" in text
    assert (tmp_path / "unit" / "bad" / "events.jsonl").read_text().strip() == '{"before":1}'


def test_no_error_txt_on_success(tmp_path):
    with RunWriter("unit", root=tmp_path, run_id="good") as w:
        w.summary({"x": measured(1)})
    assert not (w.path / "error.txt").exists()


def test_plot_bar_chart_writes_png(writer):
    fig = plots.bar_chart(["pi", "nano"], {"predicted": [1.0, 2.0], "measured": [1.1, None]},
                          ylabel="latency (s)", title="t")
    path = writer.plot("bar", fig, dpi=50)
    assert path == writer.path / "bar.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_line_chart_writes_png(writer):
    fig = plots.line_chart([1, 10, 100], {"a": [1.0, 2.0, 3.0]}, xlabel="MB", ylabel="s",
                           title="t", logx=True)
    assert fig.axes[0].get_xscale() == "log"
    path = writer.plot("line", fig, dpi=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chart_series_length_mismatch_rejected():
    with pytest.raises(ValueError, match="'a'"):
        plots.bar_chart(["x", "y"], {"a": [1.0]}, ylabel="", title="")
    with pytest.raises(ValueError, match="'b'"):
        plots.line_chart([1, 2], {"b": [1.0, 2.0, 3.0]}, xlabel="", ylabel="", title="")


# ----------------------------------------------------------------- progress


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_disabled_when_stderr_not_a_tty(monkeypatch, capsys):
    monkeypatch.delenv("EDGEBED_PROGRESS", raising=False)
    bar = progress(range(3), desc="rounds")
    assert bar.disable
    assert list(bar) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_progress_enabled_on_tty_or_when_forced(monkeypatch):
    monkeypatch.delenv("EDGEBED_PROGRESS", raising=False)
    assert progress_enabled(_Tty())
    monkeypatch.setenv("EDGEBED_PROGRESS", "0")
    assert not progress_enabled(_Tty())
    monkeypatch.setenv("EDGEBED_PROGRESS", "1")
    assert progress_enabled(io.StringIO())
    fake = io.StringIO()
    monkeypatch.setattr("sys.stderr", fake)
    with progress(total=2, desc="upload") as bar:
        assert not bar.disable
        bar.update(2)
    assert "upload" in fake.getvalue()


# ----------------------------------------------------------------- print_table


def test_print_table_alignment():
    rows = [
        {"device": "pi4", "latency_s": 0.5, "bytes": 1024},
        {"device": "jetson-nano", "latency_s": 12.25, "bytes": 7},
        {"device": "x", "bytes": None},
    ]
    out = io.StringIO()
    text = print_table(rows, ["device", "latency_s", "bytes"], file=out)
    assert out.getvalue() == text
    lines = text.splitlines()
    assert lines == [
        "device       latency_s  bytes",
        "-----------  ---------  -----",
        "pi4             0.5000   1024",
        "jetson-nano    12.2500      7",
        "x                    -      -",
    ]


def test_print_table_defaults_to_current_stdout_and_float_format(capsys):
    print_table([{"a": 1.23456}], ["a"], float_format=".2f")
    assert capsys.readouterr().out == "   a\n----\n1.23\n"
    assert "1.000e-06" in format_table([{"a": 1e-6}], ["a"])


def test_write_json_atomic_with_a_mode_and_read_json(tmp_path):
    """The state files' writer: atomic, its mode from the start (credentials
    are 0600), a stale temporary file's wider mode not kept; read_json's default."""
    import os
    import stat

    from edgebed.results.jsonable import read_json, write_json_atomic

    path = tmp_path / "secret.json"
    assert read_json(path, {}) == {}
    stale = tmp_path / "secret.json.tmp"
    stale.write_text("half")
    os.chmod(stale, 0o644)
    write_json_atomic(path, {"a": 1}, mode=0o600)
    assert read_json(path, {}) == {"a": 1} and not stale.exists()
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_json_atomic(tmp_path / "plain.json", [1, 2])
    assert json.loads((tmp_path / "plain.json").read_text()) == [1, 2]
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "nan.json", {"x": float("nan")})
