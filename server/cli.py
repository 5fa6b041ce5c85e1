"""``edgebed-server``: run the edge server until SIGINT or SIGTERM.

Agents register and keep their sessions; telemetry spans they send are
appended to ``--events`` as JSON lines. Workloads and benchmarks drive the
same server in-process through ``edgebed.server.core.EdgeServer``.
"""
import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from typing import List, Optional

from edgebed.server.core import EdgeServer, ServerConfig

logger = logging.getLogger("edgebed.server")


def parse_args(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(prog="edgebed-server", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="0.0.0.0:50051", help="HOST:PORT to bind")
    parser.add_argument("--token", default=os.environ.get("EDGEBED_TOKEN"),
                        help="shared token agents must present (default: $EDGEBED_TOKEN)")
    parser.add_argument("--tls-cert", help="PEM certificate chain")
    parser.add_argument("--tls-key", help="PEM private key")
    parser.add_argument("--max-transfer-mb", type=float, default=2048.0,
                        help="reject transfers larger than this (RESOURCE_EXHAUSTED)")
    parser.add_argument("--events", help="append received spans to this JSONL file")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    try:
        config = ServerConfig(listen=args.listen, token=args.token, tls_cert=args.tls_cert,
                              tls_key=args.tls_key,
                              max_transfer_bytes=int(args.max_transfer_mb * 1024 * 1024))
    except ValueError as exc:
        parser.error(str(exc))
    return config, args


async def serve(config: ServerConfig, events_path: Optional[str]) -> None:
    server = EdgeServer(config)
    events = open(events_path, "a", encoding="utf-8") if events_path else None
    if events is not None:
        def write(span) -> None:
            events.write(json.dumps(span.to_dict()) + "\n")
            events.flush()
        server.add_span_sink(write)
    port = await server.start()
    print(f"edgebed-server listening on port {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logger.info("shutting down")
    await server.stop()
    if events is not None:
        events.close()


def main(argv: Optional[List[str]] = None) -> int:
    config, args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(config, args.events))
    return 0


if __name__ == "__main__":
    sys.exit(main())
