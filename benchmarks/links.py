"""Links: each device's uplink and downlink capacity and RTT, measured.

The measurement every testbed run starts with, on its own: for each device,
real unshaped uploads and downloads through the same Upload and Download
RPCs the workloads use, growing until one transfer lasts a second, and the
median round trip of a few commands over its Session stream. On a standing
server (``--server``) it measures the boards' real links; on the local
fleet, loopback (unless the agents emulate links, which it reports beside).
summary.json keys: ``links`` ({device: up_capacity_bps, down_capacity_bps,
rtt_ms, provenance}), ``emulated``.
"""
import argparse
from dataclasses import dataclass

from edgebed.benchmarks.options import Presets, add_options, option, resolve
from edgebed.results import format_table, given, measured
from edgebed.server.experiment import RunContext
from edgebed.testbed import DeviceClass, add_testbed_arguments, run_experiment

DEVICE_CLASSES = [DeviceClass(0.0, power_backend="null")]  # no quota, no emulated link
COLUMNS = ["device", "up_mbps", "down_mbps", "rtt_ms", "up_bytes", "down_bytes",
           "emulated_up_mbps", "emulated_down_mbps"]


@dataclass(frozen=True)
class Options:
    seed: int = option(0, "random seed")


PRESETS = Presets(quick=Options(), full=Options())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, Options, PRESETS)
    add_testbed_arguments(parser, agents=2)


async def experiment(ctx: RunContext, options: Options) -> None:
    rows = []
    for name in ctx.devices:
        link, emulated = ctx.links[name], ctx.server.link(name)
        rows.append({"device": name, "up_mbps": link.up_capacity_bps / 1e6,
                     "down_mbps": link.down_capacity_bps / 1e6, "rtt_ms": link.rtt_ms,
                     "up_bytes": link.up_bytes, "down_bytes": link.down_bytes,
                     "emulated_up_mbps": emulated.uplink_bps / 1e6,
                     "emulated_down_mbps": emulated.downlink_bps / 1e6})
    ctx.writer.table("links", rows)
    ctx.say(format_table(rows, COLUMNS))
    ctx.writer.summary({**ctx.link_figures(), "devices": given(list(ctx.devices)),
                        "probe_bytes": measured({r["device"]: [r["up_bytes"], r["down_bytes"]]
                                                 for r in rows},
                                                "the transfer each capacity comes from")})


def run(args: argparse.Namespace) -> int:
    run_experiment(args, experiment, resolve(args, PRESETS), DEVICE_CLASSES, "link")
    return 0
