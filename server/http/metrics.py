"""Prometheus metrics of a standing server, read from its live state.

Two sources, both real:

- :class:`SpanCounters`, a span sink: every span the server receives adds
  its seconds, joules and bytes to counters per device, phase, suite (the
  submitted run's, or ``none`` for spans outside one, such as the link
  probes), power backend and provenance. A run's spans are counted at the
  moment its ``events.jsonl`` gets them, so the counters of a suite that ran
  once agree with that file.
- :class:`EdgebedCollector`, called at every scrape: devices and their
  states, heartbeat ages and links (the registry, the link book, the
  control plane), runs by state, the queue, transfers in flight, each running
  run's progress, and the solver's prediction error per recent run (from
  the run's events, :mod:`edgebed.results.digest`).

Each listener has its own ``CollectorRegistry``, so two servers in one
process (tests) never share a metric.
"""
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Iterator, List, Tuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from edgebed.proto.records import Span
from edgebed.results.digest import DigestCache, PhaseTotal
from edgebed.server.control.plane import BUSY, DRAINING, GONE, IDLE
from edgebed.server.control.runs import CANCELLED, DONE, FAILED, QUEUED, RUNNING, Run

if TYPE_CHECKING:
    from edgebed.server.control.plane import ControlPlane
    from edgebed.server.core import EdgeServer

DEVICE_STATES = (IDLE, BUSY, DRAINING, GONE)
RUN_STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
NO_SUITE = "none"
RECENT_RUNS = 20  # runs whose prediction errors are exported (a label per run stays bounded)
PHASE_LABELS = ["device", "phase", "suite", "power_backend", "provenance"]


@dataclass(frozen=True)
class AllocatedRate:
    rate_bps: float
    run_id: str


class SpanCounters:
    """A span sink that counts; install with ``server.add_span_sink``."""

    def __init__(self, plane: "ControlPlane") -> None:
        self.plane = plane
        self.totals: Dict[Tuple[str, str, str, str, str], PhaseTotal] = {}
        self.allocated_up: Dict[str, AllocatedRate] = {}  # the rate the device last paced to

    def suite_of(self, run_id: str) -> str:
        """The suite of the running run a span belongs to: the run whose id
        the span's run id is, or starts with followed by ``-`` (experiments
        scope their keys ``<run-id>-<part>``). Dict lookups, not a scan: a
        standing server keeps every run it ever ran."""
        runs = self.plane.store.runs
        for end in [len(run_id)] + [i for i, c in enumerate(run_id) if c == "-"]:
            run = runs.get(run_id[:end])
            if run is not None and run.status.state == RUNNING:
                return run.status.suite
        return NO_SUITE

    def __call__(self, span: Span) -> None:
        key = (span.device, span.phase, self.suite_of(span.run_id), span.power_backend,
               span.provenance)
        totals = self.totals.get(key)
        if totals is None:
            totals = self.totals[key] = PhaseTotal()
        totals.count(max(0.0, span.end_s - span.start_s), span.energy_j, span.bytes,
                     bool(span.low_confidence))
        rate = span.extra.get("rate_bps") if isinstance(span.extra, dict) else None
        if isinstance(rate, (int, float)) and rate > 0:
            self.allocated_up[span.device] = AllocatedRate(float(rate), span.run_id)


def recent_runs(plane: "ControlPlane", count: int = RECENT_RUNS) -> List[Run]:
    """Running runs and the last ``count`` submitted."""
    listing = plane.store.listing()
    recent = listing[-count:]
    return recent + [r for r in listing[:-count] if r.status.state == RUNNING]


class EdgebedCollector:
    """A custom collector (prometheus_client calls ``collect`` at every scrape)."""

    def __init__(self, server: "EdgeServer", plane: "ControlPlane",
                 counters: SpanCounters, digests: DigestCache) -> None:
        self.server = server
        self.plane = plane
        self.counters = counters
        self.digests = digests

    def describe(self) -> List[Metric]:
        return []  # collected live: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        yield from self._devices()
        yield from self._phases()
        yield from self._runs()
        yield GaugeMetricFamily(
            "edgebed_transfers_in_flight", "Transfer streams open right now, in all (Upload, "
            "Download and Infer: each counts against the server's transfer limits)",
            value=self.server.transfers_in_flight)

    # ------------------------------------------------------------ devices
    def _devices(self) -> Iterator[Metric]:
        records = sorted(self.server.registry.all(), key=lambda r: r.name)
        now = time.monotonic()
        by_state = GaugeMetricFamily("edgebed_devices", "Registered devices by state (gone: "
                                     "registered once, no live session now)", labels=["state"])
        state = GaugeMetricFamily("edgebed_device_state", "1 for the state each device is in",
                                  labels=["device", "state"])
        info = GaugeMetricFamily("edgebed_device_info", "The device's probed profile",
                                 labels=["device", "power_backend", "accelerator", "cpu_model",
                                         "hostname"])
        heartbeat = GaugeMetricFamily("edgebed_device_heartbeat_age_seconds",
                                      "Seconds since the device's last heartbeat",
                                      labels=["device"])
        capacity = GaugeMetricFamily("edgebed_device_link_capacity_bps", "Measured link "
                                     "capacity (real transfers before a run)",
                                     labels=["device", "direction", "provenance"])
        rtt = GaugeMetricFamily("edgebed_device_link_rtt_seconds", "Measured round trip time",
                                labels=["device"])
        allocated = GaugeMetricFamily("edgebed_device_allocated_rate_bps", "The rate a solver "
                                      "allocated: what the device's last paced upload used",
                                      labels=["device", "direction", "run_id"])
        emulated = GaugeMetricFamily("edgebed_device_emulated_rate_bps", "The agent's --link "
                                     "pacing, when it was given one", labels=["device",
                                                                              "direction"])
        counts = {s: 0 for s in DEVICE_STATES}
        for record in records:
            name, profile = record.name, record.profile
            current = self.plane.device_state(name)
            counts[current] += 1
            for s in DEVICE_STATES:
                state.add_metric([name, s], 1.0 if s == current else 0.0)
            info.add_metric([name, profile.power_backend, profile.accelerator, profile.cpu_model,
                             profile.hostname], 1.0)
            if record.session is not None:
                heartbeat.add_metric([name], now - record.session.last_heartbeat)
            link = self.server.links.get(name)
            if link is not None:
                capacity.add_metric([name, "up", link.provenance], link.up_capacity_bps)
                capacity.add_metric([name, "down", link.provenance], link.down_capacity_bps)
                rtt.add_metric([name], link.rtt_ms / 1e3)
            rate = self.counters.allocated_up.get(name)
            if rate is not None:
                allocated.add_metric([name, "up", rate.run_id], rate.rate_bps)
            paced = record.link
            for direction, value in (("up", paced.uplink_bps), ("down", paced.downlink_bps)):
                if value:
                    emulated.add_metric([name, direction], value)
        for s, n in counts.items():
            by_state.add_metric([s], n)
        yield from (by_state, state, info, heartbeat, capacity, rtt, allocated, emulated)

    # ------------------------------------------------------------ spans
    def _phases(self) -> Iterator[Metric]:
        what = "per device, phase, suite, power backend and provenance, since the server started"
        seconds = CounterMetricFamily("edgebed_phase_seconds", "Seconds spent in phases, " + what,
                                      labels=PHASE_LABELS)
        energy = CounterMetricFamily("edgebed_phase_energy_joules", "Energy of phases (the "
                                     "provenance label says measured, estimated or modeled), "
                                     + what, labels=PHASE_LABELS)
        nbytes = CounterMetricFamily("edgebed_phase_bytes", "Bytes moved in phases, " + what,
                                     labels=PHASE_LABELS)
        spans = CounterMetricFamily("edgebed_phase_spans", "Spans received, " + what,
                                    labels=PHASE_LABELS)
        low = CounterMetricFamily("edgebed_phase_low_confidence_spans", "Spans whose energy "
                                  "window was too short for the sensor, " + what,
                                  labels=PHASE_LABELS)
        for key, totals in sorted(self.counters.totals.items()):
            labels = list(key)
            seconds.add_metric(labels, totals.seconds)
            energy.add_metric(labels, totals.energy_j)
            nbytes.add_metric(labels, totals.bytes)
            spans.add_metric(labels, totals.spans)
            low.add_metric(labels, totals.low_confidence)
        yield from (seconds, energy, nbytes, spans, low)

    # ------------------------------------------------------------ runs
    def _runs(self) -> Iterator[Metric]:
        by_state = GaugeMetricFamily("edgebed_runs", "Runs this server knows, by state",
                                     labels=["state"])
        queue = GaugeMetricFamily("edgebed_run_queue_depth", "Runs waiting for their devices")
        progress = GaugeMetricFamily("edgebed_run_progress_ratio", "How far each running run "
                                     "is (0 to 1), as its suite reports", labels=["run_id",
                                                                                  "suite"])
        error = GaugeMetricFamily(
            "edgebed_run_prediction_error_ratio", "|measured - predicted| / predicted, the "
            "median over a recent run's comparisons of one quantity (round time, completion "
            "latency, end-to-end delay)", labels=["run_id", "suite", "quantity"])
        counts = {s: 0 for s in RUN_STATES}
        runs = self.plane.store.listing()
        for run in runs:
            counts[run.status.state] = counts.get(run.status.state, 0) + 1
            if run.status.state == RUNNING:
                progress.add_metric([run.run_id, run.status.suite], run.status.progress)
        for s, n in counts.items():
            by_state.add_metric([s], n)
        queue.add_metric([], counts[QUEUED])
        for run in recent_runs(self.plane):
            digest = self.digests.get(run.path)
            for quantity, value in sorted(digest.prediction_errors().items()):
                error.add_metric([run.run_id, run.status.suite, quantity], value)
        yield from (by_state, queue, progress, error)
