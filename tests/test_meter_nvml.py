"""NVML backend against a fake ``pynvml`` module (no GPU needed)."""
import sys
import types

import pytest

from edgebed.device.meter import MeterError, NvmlEnergyMeter, NvmlPowerMeter, open_nvml_meter
from edgebed.device.meter.nvml import _Nvml, probe_nvml

NOT_SUPPORTED = 3


class FakeNVMLError(Exception):
    def __init__(self, value):
        super().__init__("NVML error {}".format(value))
        self.value = value


def fake_pynvml(gpus, init_error=None):
    """A module with the pynvml calls the meter uses.

    ``gpus`` is a list of dicts: ``energy_mj`` / ``instant_mw`` / ``usage_mw``
    hold the current reading, or None when the GPU does not support it.
    """
    nv = types.ModuleType("pynvml")
    nv.NVMLError = FakeNVMLError
    nv.NVML_SUCCESS = 0
    nv.NVML_FI_DEV_POWER_INSTANT = 186
    nv.calls = {"init": 0, "shutdown": 0}

    def init():
        if init_error is not None:
            raise FakeNVMLError(init_error)
        nv.calls["init"] += 1

    def shutdown():
        nv.calls["shutdown"] += 1

    def reading(handle, key):
        value = gpus[handle][key]
        if value is None:
            raise FakeNVMLError(NOT_SUPPORTED)
        return value

    def field_values(handle, field_ids):
        assert field_ids == [186]
        value = gpus[handle]["instant_mw"]
        status = NOT_SUPPORTED if value is None else 0
        return [types.SimpleNamespace(nvmlReturn=status, valueType=1,
                                      value=types.SimpleNamespace(uiVal=value or 0))]

    nv.nvmlInit = init
    nv.nvmlShutdown = shutdown
    nv.nvmlDeviceGetCount = lambda: len(gpus)
    nv.nvmlDeviceGetHandleByIndex = lambda i: i
    nv.nvmlDeviceGetTotalEnergyConsumption = lambda h: reading(h, "energy_mj")
    nv.nvmlDeviceGetPowerUsage = lambda h: reading(h, "usage_mw")
    nv.nvmlDeviceGetFieldValues = field_values
    return nv


def gpu(energy_mj=None, instant_mw=None, usage_mw=None):
    return {"energy_mj": energy_mj, "instant_mw": instant_mw, "usage_mw": usage_mw}


@pytest.fixture
def install(monkeypatch):
    def _install(nv):
        monkeypatch.setitem(sys.modules, "pynvml", nv)
        return nv
    return _install


class FakeClock:
    t = 0.0

    def __call__(self):
        return self.t


def test_energy_counter_deltas_summed_over_gpus(install):
    gpus = [gpu(energy_mj=1_000_000, usage_mw=50_000), gpu(energy_mj=5_000_000, usage_mw=60_000)]
    nv = install(fake_pynvml(gpus))
    meter = open_nvml_meter()
    assert isinstance(meter, NvmlEnergyMeter) and meter.mode == "energy"
    clock = FakeClock()
    meter._clock = clock
    token = meter.begin_window()
    gpus[0]["energy_mj"] += 1500
    gpus[1]["energy_mj"] += 2500
    clock.t = 2.0
    m = meter.end_window(token)
    assert m.energy_j == pytest.approx(4.0) and m.power_w == pytest.approx(2.0)
    assert m.power_backend == "nvml" and m.provenance == "measured" and not m.low_confidence
    meter.close()
    meter.close()
    assert nv.calls["shutdown"] == 1


def test_chosen_index_measures_one_gpu(install):
    gpus = [gpu(energy_mj=0), gpu(energy_mj=0)]
    install(fake_pynvml(gpus))
    meter = open_nvml_meter(index=1)
    token = meter.begin_window()
    gpus[0]["energy_mj"] += 9000
    gpus[1]["energy_mj"] += 1000
    assert meter.end_window(token).energy_j == pytest.approx(1.0)
    meter.close()
    with pytest.raises(MeterError, match="out of range"):
        open_nvml_meter(index=2)


def test_falls_back_to_instant_power_when_no_energy_counter(install):
    gpus = [gpu(instant_mw=80_000, usage_mw=75_000), gpu(instant_mw=20_000, usage_mw=1)]
    install(fake_pynvml(gpus))
    meter = open_nvml_meter()
    try:
        assert isinstance(meter, NvmlPowerMeter) and meter.mode == "instant"
        assert meter.read_power_w() == pytest.approx(100.0)
        assert meter.sensor_period_s == 0.0
    finally:
        meter.close()


def test_power_usage_is_last_and_flagged_as_one_second_average(install):
    install(fake_pynvml([gpu(usage_mw=42_000)]))
    meter = open_nvml_meter()
    try:
        assert isinstance(meter, NvmlPowerMeter) and meter.mode == "usage"
    finally:
        meter.close()
    # Integrate by hand with a fake clock and no thread.
    clock = FakeClock()
    meter = NvmlPowerMeter(_Nvml(), "usage", clock=clock, start=False)
    assert meter.sensor_period_s == 1.0
    meter.sampler.sample_once()
    token = meter.begin_window()
    for _ in range(15):
        clock.t += 0.1
        meter.sampler.sample_once()
    m = meter.end_window(token)
    meter.close()
    assert m.energy_j == pytest.approx(42.0 * 1.5)
    assert m.low_confidence  # 1.5 s is under two 1 s averaging periods


def test_mixed_support_uses_what_every_gpu_has(install):
    install(fake_pynvml([gpu(energy_mj=1, usage_mw=1), gpu(usage_mw=1)]))
    meter = open_nvml_meter()
    try:
        assert meter.mode == "usage"
    finally:
        meter.close()


def test_explicit_unsupported_mode_is_an_error(install):
    install(fake_pynvml([gpu(energy_mj=1, usage_mw=1)]))
    with pytest.raises(MeterError, match="instant"):
        open_nvml_meter(mode="instant")
    with pytest.raises(ValueError):
        open_nvml_meter(mode="bogus")


def test_no_driver_or_no_reading_is_a_meter_error(install):
    install(fake_pynvml([], init_error=9))
    with pytest.raises(MeterError, match="nvmlInit"):
        probe_nvml()
    nv = install(fake_pynvml([gpu()]))
    with pytest.raises(MeterError, match="no power reading"):
        probe_nvml()
    assert nv.calls["shutdown"] == nv.calls["init"] == 1
    install(fake_pynvml([]))
    with pytest.raises(MeterError, match="no GPUs"):
        probe_nvml()


def test_probe_describes_the_mode(install):
    install(fake_pynvml([gpu(energy_mj=1), gpu(energy_mj=2)]))
    assert probe_nvml() == "2 GPU(s), energy mode"


def test_missing_package_is_a_meter_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes the import fail
    with pytest.raises(MeterError, match="not installed"):
        probe_nvml()
