"""The standing server's HTTP side: a live dashboard of the fleet and its
runs, and Prometheus metrics, on one listener (``edgebed-server
--http-listen``, loopback by default).

Server-only (aiohttp, prometheus-client: the ``server`` extra); the agent
never imports it. ``attach_http`` starts it on the server's event loop.
"""
from edgebed.server.http.app import DEFAULT_LISTEN, HttpListener, attach_http, parse_listen

__all__ = ["DEFAULT_LISTEN", "HttpListener", "attach_http", "parse_listen"]
