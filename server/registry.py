"""Device registry: who registered, with what profile, and their live session.

A device is known by its name (unique per server). Registering a name whose
device has gone replaces the old registration: that is how an agent that
restarted, or reconnected after a server restart, comes back. A name whose
device is attached is taken, unless the new registration proves the same
identity (then it replaces the stale session and says so). Each
registration gets a fresh session key; a Session stream must present it.
"""
import asyncio
import itertools
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from edgebed.proto import edge_pb2 as pb
from edgebed.proto.records import CapabilityProfile, Command, CommandResult, LinkProfile
from edgebed.server.errors import (
    CommandFailed,
    CommandTimeout,
    DeviceDisconnected,
    NameTaken,
    NotEnoughDevices,
    ServerError,
    UnknownDevice,
)
from edgebed.server.identity import ANONYMOUS, Identity, check_device_name, printable

logger = logging.getLogger(__name__)


#: A session's repeated oddities (results for unknown commands, messages out of
#: place) are logged once, then summed up at most this often and when it ends.
REPEAT_SUMMARY_S = 60.0


class RepeatedWarning:
    """One WARNING for the first occurrence of each kind of oddity, then a
    count: a summary line when an occurrence comes ``every_s`` after the last
    line, and one for whatever is left at ``flush`` (the session's end). A
    client that repeats itself cannot flood the log."""

    def __init__(self, who: str, every_s: float = REPEAT_SUMMARY_S, clock=time.monotonic) -> None:
        self.who = who
        self.every_s = every_s
        self._clock = clock
        self._said: Dict[str, float] = {}     # kind -> when its last line was logged
        self._unsaid: Dict[str, int] = {}     # kind -> occurrences since that line
        self._latest: Dict[str, str] = {}

    def warn(self, kind: str, detail: str = "") -> None:
        now = self._clock()
        said = self._said.get(kind)
        if said is None:
            self._said[kind] = now
            logger.warning("%s: %s%s", self.who, kind, f" ({detail})" if detail else "")
            return
        self._unsaid[kind] = self._unsaid.get(kind, 0) + 1
        self._latest[kind] = detail
        if now - said >= self.every_s:
            self._summary(kind, now)

    def _summary(self, kind: str, now: float) -> None:
        count = self._unsaid.pop(kind, 0)
        latest = self._latest.pop(kind, "")
        if count:
            logger.warning("%s: %d more %s in the last %.0f s%s", self.who, count, kind,
                           now - self._said[kind], f" (latest: {latest})" if latest else "")
        self._said[kind] = now

    def flush(self) -> None:
        now = self._clock()
        for kind in list(self._unsaid):
            self._summary(kind, now)


class DeviceSession:
    """The server end of one device's Session stream.

    Commands go into ``outbox`` (drained by the servicer into the stream);
    results come back through ``deliver``, resolving the awaiting future.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.outbox: "asyncio.Queue[Optional[pb.ServerMessage]]" = asyncio.Queue()
        self.last_heartbeat = time.monotonic()
        self.closed = False
        self.close_reason = ""
        # Every command the device has not answered yet, awaited or not: one
        # whose caller gave up (a timeout, a cancelled run) stays here until
        # the device answers it, because until then the device is still busy.
        self._pending: Dict[str, "asyncio.Future[CommandResult]"] = {}
        self._ids = itertools.count()
        self.oddities = RepeatedWarning(name)

    def send(self, message: pb.ServerMessage) -> None:
        if self.closed:
            raise DeviceDisconnected(f"{self.name}: session is closed")
        self.outbox.put_nowait(message)

    async def command(self, kind: str, args: dict, timeout_s: Optional[float]) -> CommandResult:
        command_id = f"{self.name}-{next(self._ids)}"
        future = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        command = Command(command_id, kind, dict(args), timeout_s or 0.0)
        try:
            self.send(pb.ServerMessage(command=command.to_proto()))
            # Shielded: a caller that gives up leaves the command pending, so
            # its result is still recognised (and the device still busy) later.
            result = await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except asyncio.TimeoutError:
            raise CommandTimeout(
                f"{self.name}: command {kind!r} gave no result within {timeout_s} s"
            ) from None
        finally:
            if future.done():
                self._pending.pop(command_id, None)
            else:  # nobody awaits it now: its result, or the session's end, only discards it
                future.add_done_callback(_discard)
        if not result.ok:
            raise CommandFailed(self.name, kind, result.error, result.error_type)
        return result

    @property
    def busy(self) -> bool:
        """Working on a command, including one whose caller gave up."""
        return bool(self._pending)

    def deliver(self, result: CommandResult) -> None:
        future = self._pending.pop(result.command_id, None)
        if future is None:
            self.oddities.warn("results for unknown commands ignored",
                               printable(result.command_id, 60))
        elif not future.done():
            future.set_result(result)

    def heartbeat(self) -> None:
        self.last_heartbeat = time.monotonic()

    def close(self, reason: str) -> None:
        """Fail every pending command and stop the outbound stream."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self.oddities.flush()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(DeviceDisconnected(f"{self.name}: {reason}"))
        self._pending.clear()
        self.outbox.put_nowait(None)


def _discard(future: "asyncio.Future") -> None:
    """Retrieve an abandoned command's outcome so asyncio does not report it."""
    if not future.cancelled():
        future.exception()


@dataclass
class DeviceRecord:
    name: str
    profile: CapabilityProfile
    session_key: str
    registered_unix_s: float
    link: LinkProfile = field(default_factory=LinkProfile)
    session: Optional[DeviceSession] = None
    disconnect_reason: str = ""
    identity: Identity = ANONYMOUS        # how it proved who it is
    gone_monotonic_s: float = 0.0         # when its session ended (0: never had one or live)
    registered_monotonic_s: float = field(default_factory=time.monotonic)

    @property
    def connected(self) -> bool:
        return self.session is not None and not self.session.closed


class DeviceRegistry:
    """Registered devices and a condition orchestrators can wait on."""

    def __init__(self) -> None:
        self._devices: Dict[str, DeviceRecord] = {}
        self._changed = asyncio.Condition()

    def register(self, name: str, profile: CapabilityProfile,
                 identity: Identity = ANONYMOUS) -> DeviceRecord:
        """A (new) registration of ``name``. A live device's name is taken:
        only the same proven identity (an agent that restarted before its old
        session timed out) may register it again, replacing the stale session."""
        check_device_name(name)
        old = self._devices.get(name)
        if old is not None and old.connected:
            if not (identity.proven and old.identity == identity):
                raise NameTaken(f"a device named {name} is attached; a second registration "
                                "must prove it is the same device (its credential or "
                                "certificate), or wait until the first one's session ends")
            logger.warning("%s registered again with its own %s: replacing its stale session",
                           name, identity.via)
            old.session.close("replaced by a new registration of the same device")
        record = DeviceRecord(
            name=name,
            profile=profile,
            session_key=secrets.token_hex(16),
            registered_unix_s=time.time(),
            link=profile.link,
            identity=identity,
        )
        self._devices[name] = record
        logger.info("registered %s (%s, %d cores, via %s)", name, printable(profile.cpu_model, 80),
                    profile.cpu_cores, identity.via)
        return record

    def get(self, name: str) -> DeviceRecord:
        try:
            return self._devices[name]
        except KeyError:
            raise UnknownDevice(f"no device named {printable(name)!r} is registered") from None

    def attach(self, name: str, session_key: str) -> DeviceSession:
        record = self.get(name)
        # Bytes, not str: compare_digest refuses a str with non-ASCII characters
        # (TypeError), and a client's key may hold any.
        if not secrets.compare_digest(record.session_key.encode("utf-8"),
                                      session_key.encode("utf-8", "surrogatepass")):
            raise ServerError(f"{name}: stale or wrong session key; register again")
        if record.session is not None:
            record.session.close("replaced by a new session")
        record.session = DeviceSession(name)
        record.disconnect_reason = ""
        record.gone_monotonic_s = 0.0
        self._notify()
        return record.session

    def detach(self, session: DeviceSession, reason: str, expected: bool = False) -> None:
        """End ``session`` for ``reason``; ``expected`` (the agent said it is stopping, or
        the server is) logs it as news, not as a warning of a device that vanished."""
        if session.closed:  # the reader and the writer both detach; log once
            return
        session.close(reason)
        record = self._devices.get(session.name)
        if record is not None and record.session is session:
            record.disconnect_reason = reason
            record.gone_monotonic_s = time.monotonic()
            log = logger.info if expected else logger.warning
            log("%s disconnected: %s", session.name, reason)
        self._notify()

    def connected(self) -> List[DeviceRecord]:
        return [r for r in self._devices.values() if r.connected]

    def all(self) -> List[DeviceRecord]:
        return list(self._devices.values())

    def session(self, name: str) -> DeviceSession:
        record = self.get(name)
        if not record.connected:
            reason = record.disconnect_reason or "no session yet"
            raise DeviceDisconnected(f"{name} is not connected ({reason})")
        assert record.session is not None
        return record.session

    async def wait_for(self, count: int, timeout_s: float) -> List[DeviceRecord]:
        """Wait until at least ``count`` devices hold a live session."""

        async def enough() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.connected()) >= count)

        try:
            await asyncio.wait_for(enough(), timeout_s)
        except asyncio.TimeoutError:
            raise NotEnoughDevices(
                f"only {len(self.connected())} of {count} devices connected within {timeout_s} s"
            ) from None
        return self.connected()

    def _notify(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        asyncio.get_running_loop().create_task(notify())

    def expire_silent(self, timeout_s: float) -> None:
        """Close sessions whose heartbeats stopped (a hung or unplugged board)."""
        now = time.monotonic()
        for record in self._devices.values():
            session = record.session
            if session is not None and not session.closed:
                silent = now - session.last_heartbeat
                if silent > timeout_s:
                    self.detach(session, f"no heartbeat for {silent:.1f} s")

    def forget_gone(self, after_s: float) -> List[str]:
        """Drop the records of devices gone for longer than ``after_s`` (a
        board that never comes back does not stay listed, or held, for ever),
        and of registrations that never opened a session within ``after_s`` (a
        flood of Registers does not grow the registry without bound)."""
        now = time.monotonic()
        gone = [name for name, r in self._devices.items()
                if not r.connected and r.gone_monotonic_s and now - r.gone_monotonic_s > after_s]
        never = [name for name, r in self._devices.items()
                 if r.session is None and now - r.registered_monotonic_s > after_s]
        for name in gone:
            del self._devices[name]
            logger.info("forgot %s: gone for over %.0f s", name, after_s)
        for name in never:
            del self._devices[name]
        if never:
            shown = ", ".join(printable(n, 40) for n in never[:5])
            more = f" and {len(never) - 5} more" if len(never) > 5 else ""
            logger.info("forgot %d registration%s that opened no session within %.0f s: %s%s",
                        len(never), "s" if len(never) > 1 else "", after_s, shown, more)
        return gone + never
