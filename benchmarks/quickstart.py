"""Quickstart: a server and 4 real agents on loopback move tensors both ways.

Each agent runs with its own CPU quota (when cgroups are writable) and link
rates. For every device the suite measures a compute phase, an upload at the
device's uplink rate and a download at its downlink rate, checks the bytes
arrived intact (checksums on both ends), prints a per-device table of
measured latency, bytes, rate and energy with provenance, and writes
results/quickstart/<run-id>/. Then every workload of the registry runs its
short pass (its testbed suite's ``quick_pass``): transfer learning (paper
000, JUDBA), federated rounds (paper 003, the proposed batch sizes and
slots) and split inference (paper 004, TPOS-UAI), each measured beside its
solver's prediction.
"""
import argparse
import asyncio
import importlib
import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import torch

from edgebed.benchmarks.options import Presets, add_options, between, option, resolve
from edgebed.benchmarks.plots import bar_chart
from edgebed.device.workloads.runtime import tensor_checksum
from edgebed.proto.contracts import runtime as rt
from edgebed.results import Tagged, derived, format_table, given, weakest
from edgebed.server.errors import WorkloadError
from edgebed.server.experiment import RunContext
from edgebed.testbed import DeviceClass, add_testbed_arguments, run_experiment
from edgebed.workloads import WORKLOADS, suite_modules

logger = logging.getLogger(__name__)

# Four emulated device classes: CPU share (cores) and link (up, down).
DEVICE_CLASSES = [
    DeviceClass(1.0, "up=100Mbit,down=200Mbit"),
    DeviceClass(0.75, "up=50Mbit,down=100Mbit"),
    DeviceClass(0.5, "up=20Mbit,down=50Mbit"),
    DeviceClass(0.25, "up=10Mbit,down=20Mbit"),
]
COLUMNS = ["device", "cpu_quota", "matmul_gflops", "compute_s", "compute_j", "up_bytes",
           "up_s", "up_mbps", "up_set_mbps", "up_capacity_mbps", "down_bytes", "down_s",
           "down_mbps", "down_set_mbps", "down_capacity_mbps", "rtt_ms", "up_j", "down_j",
           "power", "provenance"]


@dataclass(frozen=True)
class Options:
    size_mb: float = option(4.0, "MiB moved each way per device (at most 2048: a server "
                                   "refuses transfers over 2 GiB by default)",
                             check=between(0, 2048, above=True))
    seed: int = option(0, "random seed")


PRESETS = Presets(quick=Options(size_mb=1.0), full=Options())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, Options, PRESETS)
    add_testbed_arguments(parser)


def _mbps(bps: float) -> float:
    return round(bps / 1e6, 3)


async def exercise_devices(ctx: RunContext, size_bytes: int, seed: int) -> List[Dict[str, Any]]:
    """Compute, upload and download on every device; verify every byte."""
    server, names = ctx.server, ctx.devices
    keys = rt.RuntimeKeys(ctx.run_id)
    rows = {name: {"device": name} for name in names}
    # One at a time: the emulated devices share two cores. The phase lasts
    # several CFS periods so a CPU quota shows in full.
    for name in names:
        profile, link = server.profile(name), ctx.links.get(name)
        if link is not None:  # measured before the run: capacity beside the set rates
            rows[name].update({"up_capacity_mbps": _mbps(link.up_capacity_bps),
                               "down_capacity_mbps": _mbps(link.down_capacity_bps),
                               "rtt_ms": round(link.rtt_ms, 3)})
        result = await server.call(name, rt.COMPUTE, rt.ComputeIns(
            run_id=ctx.run_id, n=512, iterations=100), 120)
        rows[name].update({
            "cpu_quota": profile.cpu_quota, "matmul_gflops": round(profile.matmul_gflops, 2),
            "compute_s": result.compute.seconds, "compute_j": result.compute.energy_j,
            "power": result.compute.power_backend, "provenance": result.compute.provenance,
        })
    try:
        # All at once, as the workloads move tensors; each at its own link rate.
        uploads = await asyncio.gather(*(server.call(name, rt.UPLOAD, rt.UploadIns(
            run_id=ctx.run_id, key=keys.upload(name), size_bytes=size_bytes,
            uplink_bps=server.link(name).uplink_bps, seed=seed + i), 600)
            for i, name in enumerate(names)))
        for name, up in zip(names, uploads):
            received = await server.receive(name, keys.upload(name), timeout_s=30)
            if tensor_checksum(received.tensors["x"]) != up.checksum:
                raise WorkloadError(f"{name}: uploaded tensor differs from what was sent")
            rows[name].update({
                "up_bytes": up.bytes, "up_s": up.seconds, "up_mbps": _mbps(up.rate_bps),
                "up_set_mbps": _mbps(up.uplink_bps), "up_j": up.upload.energy_j,
            })
        payload = torch.randn(size_bytes // 4, generator=torch.Generator().manual_seed(seed))
        server.offer(keys.download(), {"x": payload})
        downloads = await asyncio.gather(*(server.call(name, rt.DOWNLOAD, rt.DownloadIns(
            run_id=ctx.run_id, key=keys.download()), 600) for name in names))
        for name, down in zip(names, downloads):
            if down.checksums["x"] != tensor_checksum(payload):
                raise WorkloadError(f"{name}: downloaded tensor differs from what was offered")
            rows[name].update({
                "down_bytes": down.bytes, "down_s": down.seconds,
                "down_mbps": _mbps(down.rate_bps),
                "down_set_mbps": _mbps(server.link(name).downlink_bps),
                "down_j": down.download.energy_j,
            })
    finally:
        server.forget(keys.prefix)
    return [rows[n] for n in names]


async def experiment(ctx: RunContext, options: Options) -> None:
    writer = ctx.writer
    size_bytes = int(options.size_mb * 1024 * 1024)
    rows = await exercise_devices(ctx, size_bytes, options.seed)
    writer.table("devices", rows)
    ctx.say(format_table(rows, COLUMNS))
    rates: Dict[str, Tuple[float, float]] = {
        r["device"]: (r["up_mbps"] * 1e6, r["down_mbps"] * 1e6) for r in rows}
    summary: Dict[str, Any] = {
        "devices": given(len(rows)),
        "size_bytes": given(size_bytes),
        "per_device": Tagged({r["device"]: r for r in rows}, weakest(r["provenance"] for r in rows),
                             "times, bytes and rates measured; energy as each row's provenance"),
        "min_up_fraction_of_set": derived(min((r["up_mbps"] / r["up_set_mbps"] for r in rows
                                                if r["up_set_mbps"]), default=None),
                                           "achieved over set upload rate"),
        # No solver allocates here: the rates tensors moved at are the emulated links.
        **ctx.link_figures(),
    }
    modules = suite_modules()
    for workload in WORKLOADS:
        if not workload.testbed:
            continue
        suite = importlib.import_module(modules[workload.testbed])
        done = await suite.quick_pass(ctx, rates)
        writer.table(done.table, done.rows)
        ctx.say(f"\n{done.title}")
        ctx.say(format_table(done.rows, done.columns))
        summary.update(done.summary)
    ctx.say("energy provenance per device is in the 'provenance' column "
            "(measured = sensor, estimated = utilization model)")
    writer.plot("rates", bar_chart(
        [r["device"] for r in rows],
        {"up measured": [r["up_mbps"] for r in rows],
         "up set": [r["up_set_mbps"] for r in rows],
         "down measured": [r["down_mbps"] for r in rows],
         "down set": [r["down_set_mbps"] for r in rows]},
        ylabel="Mbit/s", title="Measured vs set link rates"))
    writer.summary(summary)
    ctx.say(f"results: {writer.path}")


def run(args: argparse.Namespace) -> int:
    run_experiment(args, experiment, resolve(args, PRESETS), DEVICE_CLASSES, "dev",
                   benchmark_s=0.6)
    return 0
