"""Chaos: agents killed with SIGKILL in the middle of a phase (issue 12, part 9).

For each workload that runs on devices (tl, feel, split; placement's testbed
is not built yet), a fleet of four real agent processes runs a tiny
configuration and a random quarter of them (at least one) is killed while a
command is in flight: the kill is triggered by the victim's own span of the
phase that comes just before the transfer (TL's "encode" inside
``tl.encode_upload``, FEEL's "compute" inside a round, split's first
offloaded inference inside ``split.run``), so the server holds a command of
the victim's when it dies. The run completes with the survivors and names
the victims in its ``missing``; FEEL's survivors still hold bit-identical
weights; the victims, restarted under the same name, register again and
take part in the next run (TL, split) or the next round (FEEL).

SIGKILL of the standing server itself mid-run is tests/test_standing_server.py's.
``EDGEBED_CHAOS_SEED`` picks other victims.
"""
import contextlib
import dataclasses
import os
import random
import threading
from typing import Callable, Dict, List, Sequence

import pytest

from edgebed.proto.contracts import runtime as rt
from edgebed.proto.records import Span
from edgebed.server.workloads.feel.orchestrator import FederatedLearning, FeelConfig, RoundPlan
from edgebed.server.workloads.split.orchestrator import SplitConfig, SplitInference
from edgebed.server.workloads.tl.orchestrator import TLConfig, TransferLearning
from edgebed.testbed import AgentSpec, Fleet, ServerThread
from tests.helpers import wait_until, workload_on_fleet

SEED = int(os.environ.get("EDGEBED_CHAOS_SEED", "7"))


def victims_of(names: Sequence[str], salt: str) -> List[str]:
    """A random quarter of ``names`` (at least one), seeded."""
    return sorted(random.Random(f"{SEED}-{salt}").sample(list(names), max(1, len(names) // 4)))


class KillSwitch:
    """SIGKILLs ``victims`` the moment the server receives a span of one of
    them that ``trigger`` accepts: from the span sink, on the server's loop,
    so no other message of theirs is read before the kill is sent. Records
    whether each victim had a command in flight then."""

    def __init__(self, server: ServerThread, fleet: Fleet, victims: Sequence[str],
                 trigger: Callable[[Span], bool]) -> None:
        self.server, self.fleet, self.victims, self.trigger = server, fleet, list(victims), trigger
        self.fired = threading.Event()
        self.busy: Dict[str, bool] = {}
        self.phase = ""

    def sink(self, span: Span) -> None:
        if self.fired.is_set() or span.device not in self.victims or not self.trigger(span):
            return
        for name in self.victims:
            session = self.server.server.registry.get(name).session
            self.busy[name] = session is not None and not session.closed and session.busy
            self.fleet.procs[name].kill()  # no goodbye, as when a board loses power
        self.phase = span.phase
        self.fired.set()

    def __enter__(self) -> "KillSwitch":
        self.server.run(self.server.server.add_span_sink, self.sink)
        return self

    def __exit__(self, *exc) -> None:
        self.server.run(self.server.server.remove_span_sink, self.sink)

    def assert_killed_mid_command(self) -> None:
        assert self.fired.is_set(), "the victims never reached the phase"
        for name in self.victims:
            assert self.fleet.procs[name].wait(timeout=30) == -9
        assert self.busy == {name: True for name in self.victims}, self.busy


def restart(server: ServerThread, fleet: Fleet, names: Sequence[str]) -> None:
    """Start the killed agents again under their names; they register anew."""
    wait_until(lambda: not set(names) & set(server.server.device_names()), 30,
               what="the victims' sessions to end")
    fleet.start(list(names))
    wait_until(lambda: set(names) <= set(server.server.device_names()), 120,
               what="the victims to register again")
    for name in names:
        assert server.call(server.server.call(name, rt.PING, rt.PingIns(), 30)).name == name


# ---------------------------------------------------------------- federated learning

FL_NAMES = [f"ch-fl-{i}" for i in range(4)]
FL_CONFIG = FeelConfig(model="lenet", max_samples=800, deadline_s=20.0, run_id="chaos-fl", bits=8)


def _plan(names: Sequence[str], slow: Sequence[str] = ()) -> RoundPlan:
    """Batch 8 each; ``slow`` devices upload at 200 kbit/s (seconds for LeNet's
    8-bit gradient), so the kill lands in their upload."""
    return RoundPlan(batch={n: 8 for n in names},
                     uplink_bps={n: 2e5 if n in slow else 0.0 for n in names},
                     downlink_bps={n: 0.0 for n in names})


def test_feel_survives_agents_killed_mid_round_and_takes_them_back(server, tmp_path):
    specs = [AgentSpec(n, power_backend="null") for n in FL_NAMES]
    with workload_on_fleet(server, FederatedLearning, FL_CONFIG, specs, tmp_path) as (fl, fleet):
        record = server.call(fl.run(_plan(FL_NAMES)), 120)
        assert record.arrived == FL_NAMES and record.hashes_agree

        victims = victims_of(FL_NAMES, "feel")
        survivors = [n for n in FL_NAMES if n not in victims]
        chaos_round = fl.round
        with KillSwitch(server, fleet, victims,
                        lambda s: s.phase == "compute" and s.round == chaos_round) as switch:
            record = server.call(fl.run(_plan(FL_NAMES, slow=victims)), 120)
        switch.assert_killed_mid_command()
        assert record.arrived == survivors
        assert set(record.missing) == set(victims)
        assert set(record.per_device) == set(survivors)
        assert record.hashes_agree
        assert {r.hash for r in record.per_device.values()} == {fl.hash}

        restart(server, fleet, victims)
        record = server.call(fl.run(_plan(FL_NAMES)), 120)
        assert record.arrived == FL_NAMES, record.missing
        assert not record.missing
        assert record.hashes_agree
        assert {r.hash for r in record.per_device.values()} == {fl.hash}


# ---------------------------------------------------------------- transfer learning

TL_NAMES = [f"ch-tl-{i}" for i in range(4)]
TL_CONFIG = TLConfig(lam=8, max_samples=400, ae_epochs=1, cnn_epochs=1, tune_epochs=1,
                     bandwidth_hz=20e6, partition="iid", idle_profile_s=0.2, run_id="chaos-tl")


@pytest.mark.slow
def test_tl_survives_agents_killed_mid_upload_and_takes_them_back(server, tmp_path):
    specs = [AgentSpec(n, power_backend="utilization:rpi4b",
                       link=f"distance={60 + 30 * i}m,power=0.3W,bandwidth=20MHz")
             for i, n in enumerate(TL_NAMES)]
    victims = victims_of(TL_NAMES, "tl")
    survivors = [n for n in TL_NAMES if n not in victims]
    with workload_on_fleet(server, TransferLearning, TL_CONFIG, specs, tmp_path) as (tl, fleet):
        with KillSwitch(server, fleet, victims, lambda s: s.phase == "encode") as switch:
            run = server.call(tl.run(tl.decide(rho=[1] * len(TL_NAMES)), "chaos"), 300)
        switch.assert_killed_mid_command()
        assert run.devices == survivors
        assert set(run.missing) == set(victims)
        assert all(("tl.encode_upload" in run.missing[v] or "tl.await_model" in run.missing[v])
                   for v in victims), run.missing
        assert run.accuracy_uploaders is not None

        restart(server, fleet, victims)
        # The next run, on every device, the victims included.
        again = dataclasses.replace(TL_CONFIG, run_id="chaos-tl-again")
        with orchestrator(server, TransferLearning, TL_NAMES, again) as tl:
            run = server.call(tl.run(tl.decide(rho=[1] * len(TL_NAMES)), "again"), 300)
        assert run.devices == TL_NAMES
        assert not run.missing


# ---------------------------------------------------------------- split inference

SP_NAMES = [f"ch-sp-{i}" for i in range(4)]
SP_LINKS = ["up=20Mbit,down=50Mbit", "up=5Mbit,down=10Mbit", "up=2Mbit,down=5Mbit",
            "up=1Mbit,down=2Mbit"]
SP_CONFIG = SplitConfig(model="lenet", input_size=None, n_inferences=4, warmup=1,
                        profile_repeats=3, gap_s=0.0, slots_h=4, t_d_s=0.04, parallel_limit=2,
                        run_id="chaos-split")


@contextlib.contextmanager
def orchestrator(server: ServerThread, cls, names: Sequence[str], config):
    """``cls(server, names, config)`` configured (its ``async with``), closed on exit."""
    running = cls(server.server, list(names), config)
    server.call(running.__aenter__(), 300)
    try:
        yield running
    finally:
        server.call(running.__aexit__(None, None, None), 30)


@pytest.mark.slow
def test_split_survives_agents_killed_mid_stream_and_takes_them_back(server, tmp_path):
    specs = [AgentSpec(n, link=link, power_backend="null") for n, link in zip(SP_NAMES, SP_LINKS)]
    victims = victims_of(SP_NAMES, "split")
    survivors = [n for n in SP_NAMES if n not in victims]
    fleet = Fleet(server.address, specs, log_dir=tmp_path, benchmark_s=0.05).start()
    try:
        wait_until(lambda: set(SP_NAMES) <= set(server.server.device_names()), 120,
                   what="the agents to register")
        with orchestrator(server, SplitInference, SP_NAMES, SP_CONFIG) as sp:
            # Everyone offloads: each device holds an Infer stream open for its
            # whole run; a victim dies after its first (warm-up) inference.
            with KillSwitch(server, fleet, victims,
                            lambda s: s.phase == "split_offload" and s.run_id == SP_CONFIG.run_id
                            ) as switch:
                run = server.call(sp.run(sp.decide("all-offload"), "chaos"), 300)
            switch.assert_killed_mid_command()
            assert {r.device for r in run.rows} == set(survivors)
            assert set(run.missing) == set(victims)
            assert all("split.run" in run.missing[v] for v in victims)
            assert all(r.max_abs_diff < 1e-4 for r in run.rows)
            wait_until(lambda: sp.executor.active == 0, 30, what="the victims' slots to be freed")

        restart(server, fleet, victims)
        # The next run (one split run at a time per server: its Infer handler), everyone in it.
        again = dataclasses.replace(SP_CONFIG, run_id="chaos-split-again")
        with orchestrator(server, SplitInference, SP_NAMES, again) as sp:
            run = server.call(sp.run(sp.decide("all-offload"), "again"), 300)
        assert {r.device for r in run.rows} == set(SP_NAMES)
        assert not run.missing
    finally:
        fleet.stop()
