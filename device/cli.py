"""``edgebed-device``: run a device agent that dials out to an edge server."""
import argparse
import asyncio
import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional

from edgebed import argtypes
from edgebed.device.agent import Agent, AgentConfig, AgentFatal
from edgebed.device.cgroup import CpuQuotaUnavailable, apply_cpu_quota, remove_cpu_quota
from edgebed.device.emulation import format_link_profile, parse_link_profile
from edgebed.device.meter.factory import make_meter
from edgebed.device.probe import probe_profile
from edgebed.device.meter.spans import SpanRecorder
from edgebed.device.workloads import default_handlers
from edgebed.proto.codec import DEFAULT_MAX_TRANSFER_BYTES, MAX_TRANSFER_MB

logger = logging.getLogger("edgebed.device")

MIB = 1024 * 1024
MAX_BENCHMARK_S = 60.0  # a longer micro-benchmark only delays the registration


@dataclass(frozen=True)
class DeviceArgs:
    agent: AgentConfig
    labels: Dict[str, str]
    cpu_quota: float
    power_backend: str
    benchmark_s: float
    log_level: str


def parse_args(argv: Optional[List[str]] = None) -> DeviceArgs:
    parser = argparse.ArgumentParser(prog="edgebed-device", description=__doc__)
    parser.add_argument("--server", required=True, help="edge server HOST:PORT")
    parser.add_argument("--name", required=True, help="unique device name")
    parser.add_argument("--token", default=os.environ.get("EDGEBED_TOKEN"),
                        help="this device's credential (`edgebed-server enroll NAME`), or the "
                             "server's shared token (default: $EDGEBED_TOKEN)")
    parser.add_argument("--tls-ca", help="PEM file of the CA that signed the server certificate")
    parser.add_argument("--tls-cert", help="mutual TLS: this device's certificate "
                                           "(`edgebed-server ca issue NAME`)")
    parser.add_argument("--tls-key", help="mutual TLS: this device's private key")
    cores = os.cpu_count() or 1
    parser.add_argument("--cpu-quota", type=argtypes.at_most(argtypes.non_negative, cores,
                                                     " (the CPUs of this host)"),
                        default=0.0, metavar="CORES",
                        help="emulate a slower device: run in a cgroup limited to CORES CPUs")
    parser.add_argument("--max-download-mb", type=argtypes.at_most(argtypes.positive, MAX_TRANSFER_MB,
                                                                   " (1 TiB)"),
                        default=DEFAULT_MAX_TRANSFER_BYTES / MIB, metavar="MB",
                        help="refuse downloads that would make this device hold more "
                             "(default %(default)s)")
    parser.add_argument("--link", default="", metavar="PROFILE",
                        help="emulate a link: pace to '10Mbit' or 'up=5Mbit,down=20Mbit', or "
                             "give radio parameters 'distance=150m,power=0.2W,bandwidth=1MHz' "
                             "(default: none; the server measures the real link)")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                        help="a label run selectors can match (repeatable); the server adds "
                             "name, accelerator, power and host (from the probed profile), "
                             "which a --label of the same key overrides")
    parser.add_argument("--power-backend", default="auto",
                        help="auto, nvml, jetson, rapl, rpi5, utilization, null, or "
                             "utilization:BOARD (e.g. rpi4b) to model an emulated board")
    parser.add_argument("--benchmark-s", type=argtypes.at_most(argtypes.non_negative, MAX_BENCHMARK_S, ""),
                        default=0.5,
                        help="seconds for the compute micro-benchmark in the profile "
                             "(0: skip it)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR", "debug", "info", "warning",
                                 "error"])
    args = parser.parse_args(argv)
    labels = {}
    for item in args.label:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip() or any(c.isspace() for c in item):
            parser.error(f"--label must be KEY=VALUE without spaces, got {item!r}")
        labels[key] = value
    try:
        link = parse_link_profile(args.link)
    except ValueError as exc:
        parser.error(f"--link: {exc}")
    try:
        agent = AgentConfig(server=args.server, name=args.name, token=args.token,
                            tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key,
                            link=link,
                            max_download_bytes=int(args.max_download_mb * MIB))
    except ValueError as exc:
        parser.error(str(exc))
    return DeviceArgs(agent, labels, args.cpu_quota, args.power_backend, args.benchmark_s,
                      args.log_level.upper())


async def _serve(agent: Agent) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await agent.run(stop)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quota = None
    try:
        if args.cpu_quota:
            # Before probing, so the profile's measured throughput is the slowed one.
            quota = apply_cpu_quota(args.cpu_quota, args.agent.name)
            logger.info("running under %s with %.2f CPUs", quota.mechanism, quota.cores)
        meter = make_meter(args.power_backend)
        profile = probe_profile(power_backend=meter.name, cpu_quota=args.cpu_quota,
                                link=args.agent.link, labels=args.labels,
                                benchmark_s=args.benchmark_s)
        logger.info("%s: %s, %d cores, %.1f GFLOP/s matmul, link %s, power %s",
                    args.agent.name, profile.cpu_model, profile.cpu_cores,
                    profile.matmul_gflops, format_link_profile(args.agent.link), meter.name)
        # The agent replaces the sink with its Session uplink.
        recorder = SpanRecorder(meter, device=args.agent.name, run_id="", sink=lambda span: None)
        agent = Agent(args.agent, default_handlers(), profile, recorder)
        asyncio.run(_serve(agent))
        return 0
    except (CpuQuotaUnavailable, AgentFatal, ValueError) as exc:
        print(f"edgebed-device: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if quota is not None:
            remove_cpu_quota(quota)


if __name__ == "__main__":
    sys.exit(main())
