"""Errors the server raises to orchestrators (never to gRPC peers directly:
``servicer.status_for`` maps them to status codes in one place)."""
from edgebed import EdgebedError


class ServerError(EdgebedError):
    """Base class of server-side errors."""


class Unauthenticated(ServerError):
    """Missing or wrong token."""


class UnknownDevice(ServerError, KeyError):
    """No device of that name is registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown device"


class DeviceDisconnected(ServerError):
    """The device went away (stream closed or heartbeats stopped)."""


class CommandFailed(ServerError):
    """The device's handler raised; carries the device's error text."""

    def __init__(self, device: str, kind: str, error: str, error_type: str = ""):
        super().__init__(f"{device}: command {kind!r} failed: {error_type}: {error}")
        self.device = device
        self.kind = kind
        self.error = error
        self.error_type = error_type


class CommandTimeout(ServerError, TimeoutError):
    """No result came back before the deadline."""


class NotOffered(ServerError, KeyError):
    """A device asked to download a key nobody offered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not offered"
