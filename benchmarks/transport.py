"""Transport: Upload goodput vs a raw TCP socket, and shaped-rate accuracy.

Unshaped: a real agent process uploads 1, 16 and 128 MiB float32 tensors to
the edge server on loopback; a plain TCP sender process moves the same bytes
to a plain receiver in the same run, and so does a bare gRPC client stream of
1 MiB byte messages (what Python gRPC alone costs). Shaped: the agent uploads at 1, 10 and
100 Mbit/s and the achieved goodput is compared with the set rate. Both are
medians over repetitions. summary.json keys: ``loopback_ratio_vs_raw`` (the
minimum over sizes) and ``shaped_fraction`` (the minimum over rates).
"""
import argparse
import statistics
from dataclasses import dataclass
from typing import Any, Dict, List

from edgebed.benchmarks import baregrpc, rawtcp
from edgebed.benchmarks.options import Presets, add_options, between, option, positive, resolve
from edgebed.benchmarks.plots import bar_chart
from edgebed.proto.contracts import runtime as rt
from edgebed.results import derived, format_table, given, measured, progress
from edgebed.testbed import DeviceClass, ServerThread, add_testbed_arguments, local_fleets

MIB = 1024 * 1024
SIZES_MIB = [1, 16, 128]
RATES_BPS = [1e6, 10e6, 100e6]
SENDER = [DeviceClass(0.0, power_backend="auto")]  # the host itself, at full speed


@dataclass(frozen=True)
class Options:
    repeats: int = option(5, "repetitions per point, median reported", check=positive)
    shaped_s: float = option(3.0, "each shaped transfer lasts about this long, s",
                             check=between(0, 600, above=True))
    seed: int = option(0, "random seed")


PRESETS = Presets(quick=Options(repeats=3, shaped_s=1.5), full=Options())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, Options, PRESETS)
    add_testbed_arguments(parser, agents=None)  # one sender on this host


def _upload(srv: ServerThread, name: str, nbytes: int, rate_bps: float, seed: int) -> rt.UploadRes:
    key = rt.RuntimeKeys("transport").upload(name, f"{nbytes}-{rate_bps:g}-{seed}")
    result = srv.call(srv.server.call(name, rt.UPLOAD, rt.UploadIns(
        run_id="transport", key=key, size_bytes=nbytes, uplink_bps=rate_bps, seed=seed), 600))
    srv.call(srv.server.receive(name, key, timeout_s=60))  # drain the inbox
    return result


def run(args: argparse.Namespace) -> int:
    options = resolve(args, PRESETS)
    repeats = options.repeats
    rows: List[Dict[str, Any]] = []
    with local_fleets(args, options) as fleets:
        writer = fleets.writer
        receiver = rawtcp.RawReceiver()
        bare = baregrpc.BareReceiver()
        try:
            with fleets.start(SENDER, 1, "transport") as (srv, ctx):
                sender = ctx.devices[0]
                for size in progress(SIZES_MIB, desc="loopback sizes"):
                    nbytes = size * MIB
                    # Small transfers are short and noisy: repeat them more.
                    count = repeats * max(1, 16 // size)
                    _upload(srv, sender, nbytes, 0.0, options.seed)  # warm-up
                    grpc_s = [_upload(srv, sender, nbytes, 0.0, options.seed + r).seconds
                              for r in range(count)]
                    raw_s = rawtcp.measure(receiver, nbytes, count + 1, options.seed)[1:]  # warm-up
                    bare_s = baregrpc.measure(bare, nbytes, count + 1)[1:]
                    grpc_bps = 8 * nbytes / statistics.median(grpc_s)
                    raw_bps = 8 * nbytes / statistics.median(raw_s)
                    bare_bps = 8 * nbytes / statistics.median(bare_s)
                    rows.append({"kind": "loopback", "size_mib": size,
                                 "grpc_mbps": grpc_bps / 1e6, "raw_tcp_mbps": raw_bps / 1e6,
                                 "bare_grpc_mbps": bare_bps / 1e6, "ratio": grpc_bps / raw_bps,
                                 "vs_bare_grpc": grpc_bps / bare_bps, "repeats": count})
                for rate in progress(RATES_BPS, desc="shaped rates"):
                    nbytes = int(rate * options.shaped_s / 8) // 4 * 4
                    achieved = [_upload(srv, sender, nbytes, rate, options.seed + r).rate_bps
                                for r in range(repeats)]
                    median = statistics.median(achieved)
                    rows.append({"kind": "shaped", "size_mib": nbytes / MIB,
                                 "set_mbps": rate / 1e6, "grpc_mbps": median / 1e6,
                                 "fraction": median / rate})
        finally:
            receiver.close()
            bare.close()
        writer.table("transport", rows)
        print(format_table(rows, ["kind", "size_mib", "set_mbps", "grpc_mbps", "raw_tcp_mbps",
                                  "bare_grpc_mbps", "ratio", "vs_bare_grpc", "fraction"]))
        loop_rows = [r for r in rows if r["kind"] == "loopback"]
        shaped_rows = [r for r in rows if r["kind"] == "shaped"]
        writer.plot("loopback", bar_chart(
            [f"{r['size_mib']} MiB" for r in loop_rows],
            {"edgebed Upload": [r["grpc_mbps"] for r in loop_rows],
             "bare gRPC": [r["bare_grpc_mbps"] for r in loop_rows],
             "raw TCP": [r["raw_tcp_mbps"] for r in loop_rows]},
            ylabel="goodput (Mbit/s, measured)", title="Upload goodput on loopback"))
        writer.plot("shaped", bar_chart(
            [f"{r['set_mbps']:g} Mbit/s" for r in shaped_rows],
            {"fraction of set rate": [r["fraction"] for r in shaped_rows]},
            ylabel="achieved / set (measured)", title="Shaped Upload accuracy"))
        summary = writer.summary({
            "loopback_ratio_vs_raw": derived(min(r["ratio"] for r in loop_rows),
                                              "minimum over sizes"),
            # Python gRPC itself, without edgebed's framing, checksums or tensors.
            "bare_grpc_ratio_vs_raw": derived(min(r["bare_grpc_mbps"] / r["raw_tcp_mbps"]
                                                   for r in loop_rows)),
            "loopback_ratio_vs_bare_grpc": derived(min(r["vs_bare_grpc"] for r in loop_rows)),
            "shaped_fraction": derived(min(r["fraction"] for r in shaped_rows),
                                        "minimum over rates"),
            "shaped_fraction_max": derived(max(r["fraction"] for r in shaped_rows)),
            "rows": measured(rows),
            "sizes_mib": given(SIZES_MIB), "rates_bps": given(RATES_BPS),
        })
        print(f"summary: {summary}")
    return 0
