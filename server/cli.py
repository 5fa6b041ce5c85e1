"""``edgebed-server``: the standing edge server, until SIGINT or SIGTERM.

Boards stay attached to it (device-facing service: Register, Session,
Upload, Download, Infer), and clients submit experiments to it (Control
service: ``edgebed-bench SUITE --server HOST:PORT``, and the ``runs``,
``fleet``, ``watch``, ``cancel`` and ``fetch`` verbs). Runs, enrolled
credentials and the fleet CA live under ``--state-dir``. Spans are also
appended to ``--events`` when given.

    edgebed-server [options]                         serve
    edgebed-server enroll NAME [--role device|admin] a credential, printed once
    edgebed-server ca init [--host H ...]            the fleet CA and the server's certificate
    edgebed-server ca issue NAME --out DIR           a device's certificate (mutual TLS)
    edgebed-server ca revoke NAME                    refuse NAME's certificates from now on

Off loopback the server refuses to start unless devices must authenticate
(enrolled credentials, ``--token`` or ``--mtls``), or ``--insecure`` says
otherwise out loud.
"""
import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import List, Optional

from edgebed import argtypes
from edgebed.proto.codec import DEFAULT_MAX_TRANSFER_BYTES, MAX_TRANSFER_MB
from edgebed.server import ca
from edgebed.server.ca import CA_DIR
from edgebed.server.config import ServerConfig
from edgebed.server.control.runs import default_state_dir
from edgebed.server.control.service import attach_control
from edgebed.server.core import EdgeServer
from edgebed.server.errors import RequestError
from edgebed.server.http import DEFAULT_LISTEN, attach_http, parse_listen
from edgebed.server.identity import ROLES, CredentialStore, devices_must_authenticate

logger = logging.getLogger("edgebed.server")



def parse_args(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(prog="edgebed-server", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=argtypes.listen_address, default="0.0.0.0:50051",
                        help="HOST:PORT to bind (port 0: any free one)")
    parser.add_argument("--token", default=os.environ.get("EDGEBED_TOKEN"),
                        help="a token shared by every device: whoever holds it may act as any "
                             "device (default: $EDGEBED_TOKEN; prefer enrolled credentials)")
    parser.add_argument("--admin-token", default=os.environ.get("EDGEBED_ADMIN_TOKEN"),
                        help="token clients of the Control service must present (default: "
                             "$EDGEBED_ADMIN_TOKEN; or enrol admin credentials; without either, "
                             "Control answers loopback only)")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help=f"runs, enrolled credentials, the fleet CA (default: "
                             f"{default_state_dir()})")
    parser.add_argument("--mtls", action="store_true",
                        help="mutual TLS with the fleet CA of --state-dir (`edgebed-server ca "
                             "init`): every device shows a certificate naming it")
    parser.add_argument("--client-ca", help="mutual TLS with this CA (PEM) instead")
    parser.add_argument("--insecure", action="store_true",
                        help="serve off loopback although devices need not authenticate")
    parser.add_argument("--link-ttl", type=argtypes.non_negative, default=600.0, metavar="S",
                        help="seconds a measured link is trusted before a run measures it "
                             "again (default %(default)s)")
    parser.add_argument("--tls-cert", help="PEM certificate chain")
    parser.add_argument("--tls-key", help="PEM private key")
    parser.add_argument("--max-transfer-mb", type=argtypes.at_most(argtypes.positive,
                                                                   MAX_TRANSFER_MB, " (1 TiB)"),
                        default=DEFAULT_MAX_TRANSFER_BYTES / (1024 * 1024),
                        help="reject transfers larger than this (RESOURCE_EXHAUSTED; at most "
                             "1 TiB)")
    parser.add_argument("--retain-s", type=argtypes.positive, default=3600.0, metavar="S",
                        help="uploads nobody collects, offers and gone devices are forgotten "
                             "after this long, with a log line (default %(default)s)")
    parser.add_argument("--stream-idle-s", type=argtypes.positive, default=60.0, metavar="S",
                        help="a transfer stream that sends nothing this long is ended "
                             "(DEADLINE_EXCEEDED; default %(default)s)")
    parser.add_argument("--events", help="append received spans to this JSONL file")
    parser.add_argument("--http-listen", default=None, metavar="HOST:PORT",
                        help="the dashboard (/) and Prometheus metrics (/metrics), with the "
                             "Control service's access rule; 'none' for no listener (default "
                             f"{DEFAULT_LISTEN}, skipped with a warning when it is taken)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR", "debug", "info", "warning",
                                 "error"])
    args = parser.parse_args(argv)
    args.state_dir = args.state_dir or default_state_dir()
    tls_cert, tls_key, client_ca = args.tls_cert, args.tls_key, args.client_ca
    if args.mtls:
        ca = args.state_dir / CA_DIR
        tls_cert, tls_key, client_ca = (tls_cert or str(ca / "server.pem"),
                                        tls_key or str(ca / "server.key"),
                                        client_ca or str(ca / "ca.pem"))
        if not Path(client_ca).exists():
            parser.error(f"--mtls: no fleet CA under {ca} (run `edgebed-server ca init`)")
    try:
        config = ServerConfig(listen=args.listen, token=args.token, tls_cert=tls_cert,
                              tls_key=tls_key, client_ca=client_ca,
                              state_dir=str(args.state_dir),
                              max_transfer_bytes=int(args.max_transfer_mb * 1024 * 1024),
                              link_ttl_s=args.link_ttl, retain_s=args.retain_s,
                              stream_idle_s=args.stream_idle_s)
        parse_listen(args.http_listen)
    except ValueError as exc:
        parser.error(str(exc))
    return config, args


def is_loopback(listen: str) -> bool:
    """Whether the ``HOST:PORT`` to bind is loopback only."""
    try:
        host, _ = argtypes.host_port(listen)
    except ValueError:
        return False
    return argtypes.is_loopback_host(host)


def check_safety(config: ServerConfig, insecure: bool) -> Optional[str]:
    """Why the server must not start as configured (None: it may), and warnings."""
    authenticated = devices_must_authenticate(config, CredentialStore(Path(config.state_dir)))
    if not is_loopback(config.listen):
        if not authenticated:
            if not insecure:
                return (f"refusing to serve {config.listen} (off loopback) with no device "
                        "authentication: enrol devices (`edgebed-server enroll NAME`), give "
                        "--token, or use --mtls; --insecure serves anyway")
            logger.warning("INSECURE: serving %s off loopback with no authentication: anyone "
                           "who reaches it may act as any device", config.listen)
        elif not config.tls_cert:
            logger.warning("credentials travel in cleartext: %s is served without TLS "
                           "(--tls-cert/--tls-key, or --mtls)", config.listen)
    return None


def enroll_main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="edgebed-server enroll",
                                     description="Make a credential; print it once, keep its hash.")
    parser.add_argument("name", help="the device's name (or an admin's)")
    parser.add_argument("--role", choices=ROLES, default="device")
    parser.add_argument("--state-dir", type=Path, default=default_state_dir())
    args = parser.parse_args(argv)
    try:
        token = CredentialStore(args.state_dir).enroll(args.name, args.role)
    except (ValueError, RequestError, OSError) as exc:
        print(f"edgebed-server enroll: error: {exc}", file=sys.stderr)
        return 2
    print(token)
    print(f"# the {args.role} credential of {args.name}: shown once, only its hash is kept in "
          f"{args.state_dir / 'credentials.json'}; give it as EDGEBED_TOKEN "
          f"({'the agent' if args.role == 'device' else 'EDGEBED_ADMIN_TOKEN for clients'})",
          file=sys.stderr)
    return 0


def ca_main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="edgebed-server ca",
                                     description="The fleet's CA for mutual TLS.")
    sub = parser.add_subparsers(dest="action", required=True)
    init = sub.add_parser("init", help="make the CA and the server's certificate")
    init.add_argument("--host", action="append", default=[],
                      help="a name or address devices dial (repeatable)")
    issue_p = sub.add_parser("issue", help="a device's certificate and key")
    issue_p.add_argument("name")
    issue_p.add_argument("--out", type=Path, required=True, help="folder for NAME.pem, NAME.key")
    revoke_p = sub.add_parser("revoke", help="refuse every certificate of NAME")
    revoke_p.add_argument("name")
    for p in (init, issue_p, revoke_p):
        p.add_argument("--state-dir", type=Path, default=default_state_dir())
    args = parser.parse_args(argv)
    try:
        if args.action == "init":
            for what, path in ca.init_ca(args.state_dir, args.host).items():
                print(f"{what}: {path}")
        elif args.action == "issue":
            cert, key = ca.issue(args.state_dir, args.name, args.out)
            print(f"certificate: {cert}\nkey: {key}\nCA: {args.state_dir / CA_DIR / 'ca.pem'}")
        else:
            serials = ca.revoke(args.state_dir, args.name)
            print(f"revoked {len(serials)} certificate(s) of {args.name}")
    except (ValueError, RequestError, OSError) as exc:
        print(f"edgebed-server ca {args.action}: error: {exc}", file=sys.stderr)
        return 2
    return 0


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
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "enroll":
        return enroll_main(argv[1:])
    if argv and argv[0] == "ca":
        return ca_main(argv[1:])
    config, args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state_dir = args.state_dir
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"edgebed-server: error: cannot use --state-dir {state_dir}: {exc}", file=sys.stderr)
        return 2
    refusal = check_safety(config, args.insecure)
    if refusal:
        print(f"edgebed-server: error: {refusal}", file=sys.stderr)
        return 2
    asyncio.run(serve(config, args.events, state_dir, args.admin_token, args.http_listen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
