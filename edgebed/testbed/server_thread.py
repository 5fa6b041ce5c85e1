"""An ``EdgeServer`` on its own event loop in a background thread, so
synchronous code (the local harness, tests) can drive it with ``call``.
With ``state_dir`` it is a standing server: it serves the Control service
and keeps runs there, as ``edgebed-server`` does."""
import asyncio
import dataclasses
import threading
from pathlib import Path
from typing import Any, Awaitable, Optional

from edgebed.server.control.service import attach_control
from edgebed.server.core import EdgeServer, ServerConfig


class ServerThread:
    def __init__(self, config: ServerConfig, state_dir: Optional[Path] = None,
                 admin_token: Optional[str] = None) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="edge-server",
                                        daemon=True)
        self._thread.start()
        if state_dir is not None and config.state_dir is None:  # credentials live there too
            config = dataclasses.replace(config, state_dir=str(state_dir))
        self.server = EdgeServer(config)
        self.plane = attach_control(self.server, state_dir, admin_token) if state_dir else None
        self.port = self.call(self.server.start())
        if self.plane is not None:
            self.run(self.plane.start)
        host = config.listen.rsplit(":", 1)[0]
        self.address = f"{'127.0.0.1' if host in ('0.0.0.0', '[::]', '') else host}:{self.port}"

    def call(self, awaitable: Awaitable[Any], timeout_s: Optional[float] = None) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(awaitable, self.loop).result(timeout_s)

    def run(self, fn, *args) -> Any:
        """Run a plain function on the server's loop (for non-thread-safe APIs)."""
        async def wrapper():
            return fn(*args)
        return self.call(wrapper())

    def stop(self) -> None:
        try:
            if self.plane is not None:
                self.call(self.plane.stop(), timeout_s=10)
            self.call(self.server.stop(), timeout_s=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> "ServerThread":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
