"""``edgebed-server``: the standing edge server, until SIGINT or SIGTERM.

Boards stay attached to it (device-facing service: Register, Session,
Upload, Download, Infer), and clients submit experiments to it (Control
service: ``edgebed-bench SUITE --server HOST:PORT``, and the ``runs``,
``fleet``, ``watch``, ``cancel`` and ``fetch`` verbs). Runs live under
``--state-dir``. Spans are also appended to ``--events`` when given.
"""
import argparse
import asyncio
import json
import logging
import math
import os
import signal
import sys
from pathlib import Path
from typing import List, Optional

from edgebed.server.config import ServerConfig
from edgebed.server.control.runs import default_state_dir
from edgebed.server.control.service import attach_control
from edgebed.server.core import EdgeServer
from edgebed.server.http import DEFAULT_LISTEN, attach_http, parse_listen

logger = logging.getLogger("edgebed.server")


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite non-negative number, got {text!r}")
    return value


def _positive(text: str) -> float:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def parse_args(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(prog="edgebed-server", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="0.0.0.0:50051", help="HOST:PORT to bind")
    parser.add_argument("--token", default=os.environ.get("EDGEBED_TOKEN"),
                        help="token agents must present (default: $EDGEBED_TOKEN)")
    parser.add_argument("--admin-token", default=os.environ.get("EDGEBED_ADMIN_TOKEN"),
                        help="token clients of the Control service must present (default: "
                             "$EDGEBED_ADMIN_TOKEN; without one, Control answers loopback only)")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help=f"where runs are kept (default: {default_state_dir()})")
    parser.add_argument("--link-ttl", type=_non_negative, default=600.0, metavar="S",
                        help="seconds a measured link is trusted before a run measures it "
                             "again (default %(default)s)")
    parser.add_argument("--tls-cert", help="PEM certificate chain")
    parser.add_argument("--tls-key", help="PEM private key")
    parser.add_argument("--max-transfer-mb", type=_positive, default=2048.0,
                        help="reject transfers larger than this (RESOURCE_EXHAUSTED)")
    parser.add_argument("--events", help="append received spans to this JSONL file")
    parser.add_argument("--http-listen", default=None, metavar="HOST:PORT",
                        help="the dashboard (/) and Prometheus metrics (/metrics), with the "
                             "Control service's access rule; 'none' for no listener (default "
                             f"{DEFAULT_LISTEN}, skipped with a warning when it is taken)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR", "debug", "info", "warning",
                                 "error"])
    args = parser.parse_args(argv)
    try:
        config = ServerConfig(listen=args.listen, token=args.token, tls_cert=args.tls_cert,
                              tls_key=args.tls_key,
                              max_transfer_bytes=int(args.max_transfer_mb * 1024 * 1024),
                              link_ttl_s=args.link_ttl)
        parse_listen(args.http_listen)
    except ValueError as exc:
        parser.error(str(exc))
    return config, args


async def serve(config: ServerConfig, events_path: Optional[str], state_dir: Path,
                admin_token: Optional[str], http_listen: Optional[str] = None) -> None:
    server = EdgeServer(config)
    plane = attach_control(server, state_dir, admin_token)
    try:
        http = await attach_http(server, plane, http_listen, admin_token)
    except OSError as exc:
        print(f"edgebed-server: error: --http-listen {http_listen}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    events = open(events_path, "a", encoding="utf-8") if events_path else None
    if events is not None:
        def write(span) -> None:
            events.write(json.dumps(span.to_dict()) + "\n")
            events.flush()
        server.add_span_sink(write)
    port = await server.start()
    plane.start()
    print(f"edgebed-server listening on port {port}; runs under {state_dir}", flush=True)
    if http is not None:
        print(f"dashboard and /metrics on {http.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logger.info("shutting down")
    if http is not None:
        await http.stop()
    await plane.stop()
    await server.stop()
    if events is not None:
        events.close()


def main(argv: Optional[List[str]] = None) -> int:
    config, args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state_dir = args.state_dir or default_state_dir()
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"edgebed-server: error: cannot use --state-dir {state_dir}: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(config, args.events, state_dir, args.admin_token, args.http_listen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
