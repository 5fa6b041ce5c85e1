"""The standing server's HTTP listener: the dashboard, its JSON API, live
updates as server-sent events, and Prometheus's ``/metrics``.

It runs on the server's own event loop (aiohttp), beside the gRPC servers,
and only reads: the registry, the link book and the control plane in
memory, and a run's files through a :class:`RunDigest` in a worker thread.
Routes:

- ``GET /``: the dashboard (``static/``: hand-written HTML, JS and CSS that
  ship in the wheel; nothing is fetched from anywhere else);
- ``GET /metrics``: Prometheus text format;
- ``GET /api/fleet``, ``GET /api/runs``, ``GET /api/runs/{run_id}`` (status,
  digest of its events, summary, log tail), ``GET /api/runs/{run_id}/spans
  ?after=SEQ`` (timeline spans after a sequence number);
- ``GET /api/stream[?run=RUN_ID]``: ``text/event-stream`` with ``fleet`` and
  ``runs`` events every tick, and for one run ``run`` (when it changed) and
  ``spans`` (new ones) events;
- ``GET /healthz``, ``GET|POST /login`` (public).

Errors are JSON ``{"error": message}`` with their status (401, 404, 400),
never a traceback.
"""
import asyncio
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, Optional, Tuple

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from edgebed import argtypes
from edgebed.results.digest import DigestCache, read_summary
from edgebed.server.control.runs import Run
from edgebed.server.errors import UnknownRun
from edgebed.server.http.auth import DashboardAuth
from edgebed.server.http.metrics import EdgebedCollector, SpanCounters, recent_runs
from edgebed.server.http.views import fleet_view, log_tail, run_view, runs_view

if TYPE_CHECKING:
    from edgebed.server.control.plane import ControlPlane
    from edgebed.server.core import EdgeServer

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_LISTEN = "127.0.0.1:8080"
DISABLED = ("", "none", "off")
TICK_S = 1.0
MAX_SPANS_PER_REQUEST = 4000


def parse_listen(text: Optional[str]) -> Optional[Tuple[str, int]]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as (host, port); None for
    ``none``, ``off`` or empty (no listener)."""
    if text is None or text.strip().lower() in DISABLED:
        return None
    return argtypes.host_port(text, "--http-listen")  # ValueError naming the option


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


@web.middleware
async def errors_as_json(request: web.Request, handler):
    """Every refusal says why in JSON; an unexpected error is a 500 with its
    type and message in the log and a short message here."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        return _json({"error": exc.text or exc.reason}, status=exc.status)
    except UnknownRun as exc:
        return _json({"error": str(exc)}, status=404)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:
        logger.exception("dashboard request %s failed", request.path)
        return _json({"error": f"internal error: {type(exc).__name__}"}, status=500)


class HttpListener:
    """Build with the server and its plane, ``await start(host, port)``,
    ``await stop()``. Its span sink counts from construction on."""

    def __init__(self, server: "EdgeServer", plane: "ControlPlane",
                 admin_token: Optional[str], tick_s: float = TICK_S) -> None:
        self.server = server
        self.plane = plane
        self.auth = DashboardAuth(admin_token, getattr(server, "credentials", None))
        self.tick_s = tick_s
        self.digests = DigestCache()
        self.counters = SpanCounters(plane)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(EdgebedCollector(server, plane, self.counters, self.digests))
        server.add_span_sink(self.counters)
        self.port: Optional[int] = None
        self.url = ""
        self._closing = asyncio.Event()
        self._runner: Optional[web.AppRunner] = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[errors_as_json, self.auth.middleware()])
        app.router.add_get("/", self.index)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_route("GET", "/login", self.auth.login)
        app.router.add_route("POST", "/login", self.auth.login)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/api/fleet", self.fleet)
        app.router.add_get("/api/runs", self.runs)
        app.router.add_get("/api/runs/{run_id}", self.run)
        app.router.add_get("/api/runs/{run_id}/spans", self.spans)
        app.router.add_get("/api/stream", self.stream)
        app.router.add_static("/static", STATIC_DIR, show_index=False, follow_symlinks=False)
        return app

    # ------------------------------------------------------------ lifecycle
    async def start(self, host: str, port: int) -> int:
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = self._runner.addresses[0][1] if self._runner.addresses else port
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/"
        if not self.auth.has_admins() and not argtypes.is_loopback_host(host):
            logger.warning("dashboard on %s:%d: no admin token or enrolled admin, so it answers "
                           "loopback callers only", host, self.port)
        logger.info("dashboard and /metrics on %s", self.url)
        return self.port

    async def stop(self) -> None:
        self._closing.set()
        self.server.remove_span_sink(self.counters)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------ helpers
    def _run(self, run_id: str) -> Run:
        return self.plane.get(run_id)

    async def _in_thread(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def _update_digests(self, paths: Iterable[Path]) -> None:
        for path in paths:
            self.digests.get(path).update()

    def _read_run_files(self, run: Run) -> Tuple[Any, Any]:
        self.digests.get(run.path).update()
        return read_summary(run.path), log_tail(run)

    async def _run_view(self, run: Run) -> Dict[str, Any]:
        summary, log = await self._in_thread(self._read_run_files, run)
        return run_view(run, self.plane, self.digests.get(run.path), summary, log)

    # ------------------------------------------------------------ handlers
    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def metrics(self, request: web.Request) -> web.Response:
        await self._in_thread(self._update_digests, [r.path for r in recent_runs(self.plane)])
        return web.Response(body=generate_latest(self.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def fleet(self, request: web.Request) -> web.Response:
        return _json(fleet_view(self.server, self.plane))

    async def runs(self, request: web.Request) -> web.Response:
        return _json(runs_view(self.plane))

    async def run(self, request: web.Request) -> web.Response:
        return _json(await self._run_view(self._run(request.match_info["run_id"])))

    async def spans(self, request: web.Request) -> web.Response:
        run = self._run(request.match_info["run_id"])
        after = _int_query(request, "after", 0)
        digest = self.digests.get(run.path)
        await self._in_thread(digest.update)
        return _json({"spans": digest.spans_after(after, MAX_SPANS_PER_REQUEST)})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events until the client goes or the server stops."""
        run_id = request.query.get("run", "")
        run = self._run(run_id) if run_id else None  # 404 before the stream opens
        after = _int_query(request, "after", 0)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        last_runs: Optional[str] = None
        last_run: Optional[str] = None
        try:
            while not self._closing.is_set():
                await _send(response, "fleet", fleet_view(self.server, self.plane))
                runs = runs_view(self.plane)
                key = json.dumps(runs["runs"], default=str)
                if key != last_runs:  # the fleet's heartbeats change every tick; runs may not
                    await _send(response, "runs", runs)
                    last_runs = key
                if run is not None:
                    view = await self._run_view(run)
                    key = json.dumps([view["status"], view["digest"]["records"], view["log"][-1:],
                                      view["summary"] is not None], default=str)
                    if key != last_run:
                        await _send(response, "run", view)
                        last_run = key
                    spans = self.digests.get(run.path).spans_after(after, MAX_SPANS_PER_REQUEST)
                    if spans:
                        await _send(response, "spans", {"spans": spans})
                        after = spans[-1]["seq"]
                try:
                    await asyncio.wait_for(self._closing.wait(), self.tick_s)
                except asyncio.TimeoutError:
                    pass
        except (ConnectionResetError, ConnectionError):
            pass  # the page went away
        return response


def _int_query(request: web.Request, name: str, default: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer, got {text!r}") from None


async def _send(response: web.StreamResponse, event: str, data: Any) -> None:
    await response.write(f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode())


async def attach_http(server: "EdgeServer", plane: "ControlPlane",
                      listen: Optional[str], admin_token: Optional[str], tick_s: float = TICK_S
                      ) -> Optional[HttpListener]:
    """Start the dashboard and ``/metrics`` on the running loop; None when
    there is none.

    ``listen`` is ``HOST:PORT`` (a bind failure raises ``OSError``: it was
    asked for), ``none`` (no listener), or None for :data:`DEFAULT_LISTEN`,
    where a taken port is logged and the server goes on without a dashboard
    (two servers on one host must not stop each other's boards)."""
    address = parse_listen(DEFAULT_LISTEN if listen is None else listen)
    if address is None:
        return None
    listener = HttpListener(server, plane, admin_token, tick_s)
    try:
        await listener.start(*address)
    except OSError as exc:
        await listener.stop()
        if listen is not None:
            raise
        logger.error("no dashboard or /metrics: cannot listen on %s (%s); pass --http-listen "
                     "HOST:PORT, or none", DEFAULT_LISTEN, exc)
        return None
    except BaseException:
        await listener.stop()
        raise
    return listener
