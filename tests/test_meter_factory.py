"""Backend choice: cached probes, explicit order, no silent fallback."""
import os
import sys
import types

import pytest

from edgebed.device.meter import (
    JetsonMeter,
    MeterError,
    NullMeter,
    RaplMeter,
    Rpi5Meter,
    UtilizationMeter,
    clear_probe_cache,
    factory,
    make_meter,
    probe_backends,
    probe_report,
)
from edgebed.device.meter import rpi, utilization

BOARDS = os.path.join(os.path.dirname(__file__), "fixtures", "boards")


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch):
    """A pynvml whose init fails, so a GPU on the test host cannot win."""
    nv = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def init():
        raise NVMLError("Driver Not Loaded")

    nv.NVMLError = NVMLError
    nv.nvmlInit = init
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    clear_probe_cache()
    yield
    clear_probe_cache()


def board(name):
    return os.path.join(BOARDS, name)


def test_auto_on_a_jetson_picks_the_rails():
    assert probe_backends(board("jetson_nano"))[0] == "jetson"
    meter = make_meter("auto", root=board("jetson_nano"))
    try:
        assert isinstance(meter, JetsonMeter)
    finally:
        meter.close()


def test_auto_on_x86_picks_rapl():
    meter = make_meter(root=board("x86_rapl"))
    assert isinstance(meter, RaplMeter)


def test_auto_on_a_pi4_falls_through_to_the_estimate(caplog):
    caplog.set_level("INFO", logger="edgebed.device.meter.factory")
    assert probe_backends(board("rpi4b")) == ["utilization"]
    meter = make_meter(root=board("rpi4b"))
    assert isinstance(meter, UtilizationMeter) and meter.board == "rpi4b"
    assert meter.provenance == "estimated"
    # The choice and the skipped backends are logged, not silent.
    assert "utilization" in caplog.text and "nvml" in caplog.text


def test_auto_on_a_pi5_uses_the_pmic(monkeypatch):
    with open(os.path.join(board("rpi5"), "vcgencmd_pmic_read_adc.txt")) as f:
        text = f.read()
    monkeypatch.setattr(rpi, "run_vcgencmd", lambda: text)
    monkeypatch.setattr(rpi.shutil, "which", lambda cmd: "/usr/bin/" + cmd)
    assert "rpi5" in probe_backends(board("rpi5"))
    meter = make_meter(root=board("rpi5"))
    try:
        assert isinstance(meter, Rpi5Meter)
    finally:
        meter.close()


def test_explicit_unavailable_backend_says_why():
    with pytest.raises(MeterError, match="rapl.*no package zones"):
        make_meter("rapl", root=board("jetson_nano"))
    with pytest.raises(MeterError, match="nvml.*Driver Not Loaded"):
        make_meter("nvml", root=board("x86_rapl"))
    with pytest.raises(MeterError, match="rpi5"):
        make_meter("rpi5", root=board("rpi4b"))


def test_explicit_available_backend():
    meter = make_meter("utilization", root=board("jetson_nano"))
    assert isinstance(meter, UtilizationMeter) and meter.board == "jetson_nano"


def test_null_only_when_asked_and_unknown_names_rejected():
    assert isinstance(make_meter("null"), NullMeter)
    with pytest.raises(ValueError, match="unknown power backend"):
        make_meter("intel-rapl")


def test_nothing_available_is_an_error_naming_null(tmp_path, monkeypatch):
    # No sysfs sensors, no device tree, and no coefficients for this machine.
    monkeypatch.setattr(utilization.platform, "machine", lambda: "riscv64")
    with pytest.raises(MeterError, match="make_meter\\('null'\\)"):
        make_meter(root=str(tmp_path))


def test_probes_are_cached(monkeypatch):
    calls = []

    def counting_probe(root):
        calls.append(root)
        raise MeterError("rapl: counted")

    monkeypatch.setitem(factory._PROBES, "rapl", counting_probe)
    probe_backends(board("rpi4b"))
    probe_backends(board("rpi4b"))
    make_meter(root=board("rpi4b"))
    assert calls == [board("rpi4b")]
    assert probe_report(board("rpi4b"))["rapl"] == "rapl: counted"
    clear_probe_cache()
    probe_backends(board("rpi4b"))
    assert len(calls) == 2


def test_a_crashing_probe_does_not_hide_the_others(monkeypatch):
    def broken(root):
        raise RuntimeError("bug")

    monkeypatch.setitem(factory._PROBES, "jetson", broken)
    assert probe_backends(board("x86_rapl"))[0] == "rapl"
    assert "crashed" in probe_report(board("x86_rapl"))["jetson"]
