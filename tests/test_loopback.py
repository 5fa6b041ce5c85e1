"""One loopback rule for the server's three checks: the listen address
(``edgebed-server`` refuses to serve off loopback unauthenticated), the
dashboard's bind host (its warning) and remote address, and a gRPC peer."""
import asyncio
import logging
from types import SimpleNamespace

import pytest

from edgebed.argtypes import is_loopback_host
from edgebed.server import cli
from edgebed.server.http.app import HttpListener
from edgebed.server.identity import peer_is_loopback


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "localhost.", "127.0.0.1",
                                  "127.8.9.10", "::1", "[::1]", "::1%lo", "::ffff:127.0.0.1",
                                  "[::ffff:127.0.0.2]", " 127.0.0.1 "])
def test_loopback_hosts(host):
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", ["", None, "0.0.0.0", "::", "10.0.0.1", "128.0.0.1",
                                  "::ffff:10.0.0.1", "example.org", "localhost.example.org",
                                  "127.0.0.1.example.org", "[::2]"])
def test_other_hosts(host):
    assert not is_loopback_host(host)


@pytest.mark.parametrize("listen, loopback", [
    ("localhost:50051", True), ("127.0.0.1:0", True), ("[::1]:50051", True),
    ("[::ffff:127.0.0.1]:1", True), ("0.0.0.0:50051", False), ("[::]:50051", False),
    ("127.example.org:1", False), ("nonsense", False)])
def test_the_listen_address(listen, loopback):
    assert cli.is_loopback(listen) is loopback


@pytest.mark.parametrize("peer, loopback", [
    ("ipv4:127.0.0.1:5000", True), ("ipv6:[::1]:5000", True), ("ipv6:%5B::1%5D:5000", True),
    ("ipv6:[::ffff:127.0.0.1]:5000", True), ("unix:/tmp/sock", True),
    ("ipv4:10.0.0.1:5000", False), ("ipv6:[fe80::1]:5000", False), ("ipv4:127.0.0.1", False),
    ("unix-abstract:x", False), ("", False), ("dns:localhost:1", False)])
def test_grpc_peers(peer, loopback):
    assert peer_is_loopback(peer) is loopback


@pytest.mark.parametrize("host, warned", [("localhost", False), ("127.0.0.1", False),
                                          ("0.0.0.0", True)])
def test_the_dashboard_warns_only_off_loopback(caplog, host, warned):
    """``--http-listen localhost:PORT`` is loopback: no "loopback callers only"
    warning (ipaddress cannot parse a name, so it used to warn)."""
    server = SimpleNamespace(credentials=None, add_span_sink=lambda sink: None,
                             remove_span_sink=lambda sink: None)

    async def start_and_stop():
        listener = HttpListener(server, SimpleNamespace(), None)
        try:
            await listener.start(host, 0)
        finally:
            await listener.stop()

    caplog.set_level(logging.WARNING, logger="edgebed.server.http.app")
    asyncio.run(start_and_stop())
    assert any("loopback callers only" in r.getMessage() for r in caplog.records) is warned
