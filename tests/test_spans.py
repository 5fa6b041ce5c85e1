"""SpanRecorder: one Span per phase, with the meter's energy and labels."""
import sys
import types

import pytest

from edgebed.device.meter import CounterMeter, MeterError, NullMeter
from edgebed.device.meter.spans import SpanRecorder
from edgebed.proto.records import Span


class StepMeter(CounterMeter):
    """Each counter read adds ``step`` joules: a window costs one step."""

    name = "step"

    def __init__(self, step=2.5):
        super().__init__()
        self.step = step
        self.total = 0.0

    def _read_counter(self):
        self.total += self.step
        return self.total


class BrokenMeter(NullMeter):
    name = "broken"

    def end_window(self, token):
        raise MeterError("broken: sensor vanished")


def recorder(meter=None, **kwargs):
    spans = []
    rec = SpanRecorder(meter or StepMeter(), device="pi-3", run_id="run-7", sink=spans.append,
                       **kwargs)
    return rec, spans


def test_phase_produces_a_span_with_energy_and_labels():
    rec, spans = recorder()
    with rec.phase("upload", round=4, bytes=10, key="z") as handle:
        handle.bytes = 4096
        handle.extra["chunks"] = 3
    assert len(spans) == 1
    span = spans[0]
    assert isinstance(span, Span) and handle.span is span
    assert (span.run_id, span.device, span.phase, span.round) == ("run-7", "pi-3", "upload", 4)
    assert span.bytes == 4096 and span.extra == {"key": "z", "chunks": 3}
    assert span.energy_j == pytest.approx(2.5)
    assert span.power_backend == "step" and span.provenance == "measured"
    assert span.end_s >= span.start_s and span.start_unix_s > 1.6e9
    assert Span.from_proto(span.to_proto()) == span


def test_run_id_can_be_given_per_phase():
    rec, spans = recorder()
    with rec.phase("compute", run_id="run-9"):
        pass
    with rec.phase("compute"):
        pass
    assert [s.run_id for s in spans] == ["run-9", "run-7"]


def test_nested_phases_overlap():
    rec, spans = recorder()
    with rec.phase("round"):
        with rec.phase("compute"):
            pass
        with rec.phase("upload"):
            pass
    assert [s.phase for s in spans] == ["compute", "upload", "round"]
    outer = spans[-1]
    assert outer.start_s <= spans[0].start_s and outer.end_s >= spans[1].end_s
    # The outer window saw every counter read in between.
    assert outer.energy_j == pytest.approx(2.5 * 5)


def test_failed_phase_still_produces_its_span():
    rec, spans = recorder()
    with pytest.raises(KeyError):
        with rec.phase("download"):
            raise KeyError("missing")
    assert len(spans) == 1 and spans[0].extra["error"] == "KeyError"


def test_sink_failure_does_not_mask_the_phase_error():
    def bad_sink(span):
        raise RuntimeError("sink down")

    rec = SpanRecorder(StepMeter(), device="d", run_id="r", sink=bad_sink)
    with pytest.raises(ZeroDivisionError):
        with rec.phase("compute"):
            raise ZeroDivisionError
    with pytest.raises(RuntimeError, match="sink down"):
        with rec.phase("compute"):
            pass


def test_null_and_failing_meters_keep_the_timing():
    rec, spans = recorder(NullMeter())
    with rec.phase("idle"):
        pass
    assert spans[0].power_backend == "null" and spans[0].provenance == "estimated"
    assert spans[0].low_confidence and spans[0].energy_j == 0.0
    rec, spans = recorder(BrokenMeter())
    with rec.phase("compute"):
        pass
    assert spans[0].energy_j == 0.0 and spans[0].low_confidence
    assert "sensor vanished" in spans[0].extra["meter_error"]


def test_cuda_is_synchronized_at_both_boundaries(monkeypatch):
    events = []
    cuda = types.SimpleNamespace(
        is_available=lambda: True,
        is_initialized=lambda: True,
        synchronize=lambda: events.append("sync"),
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    rec, spans = recorder()
    with rec.phase("compute"):
        events.append("body")
    assert events == ["sync", "body", "sync"]
    events.clear()
    cuda.is_initialized = lambda: False  # CUDA never used: nothing to wait for
    with rec.phase("compute"):
        pass
    assert events == []
    rec, spans = recorder(sync=False)
    cuda.is_initialized = lambda: True
    with rec.phase("compute"):
        pass
    assert events == []


def test_no_torch_imported_means_no_sync(monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    rec, spans = recorder()
    with rec.phase("compute"):
        pass
    assert "torch" not in sys.modules and len(spans) == 1
