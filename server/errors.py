"""Errors the server raises. ``servicer.STATUS_TABLE`` maps them (and the
transfer errors of ``edgebed.proto.errors``) to gRPC status codes in one
place; anything else a peer sees is INTERNAL, with a traceback in the log."""
from edgebed import EdgebedError


class ServerError(EdgebedError):
    """Base class of server-side errors."""


class Unauthenticated(ServerError):
    """Missing or wrong credential."""


class PermissionDenied(ServerError):
    """A proven caller asked for what its identity does not allow (acting as
    another device, a device credential on the Control service)."""


class NameTaken(ServerError):
    """A second registration of a live device's name that does not prove it
    is the same device."""


class DuplicateUpload(ServerError):
    """An upload under a (device, key) that still holds one nobody collected."""


class TooManyTransfers(ServerError):
    """A device (or everyone together) has as many transfers open as allowed."""


class StreamTimeout(ServerError):
    """A stream sent nothing for too long, or lasted too long."""


class SessionClosed(ServerError):
    """A device's Session ended on the server's side; the reason says why."""


class RequestError(ServerError):
    """A client's request is malformed or names something that does not
    exist (a bad device name, an unknown model, a split out of range)."""


class UnknownDevice(ServerError, KeyError):
    """No device of that name is registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown device"


class UnknownRun(ServerError, KeyError):
    """No run of that id on this server."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown run"


class DeviceDisconnected(ServerError):
    """The device went away (stream closed or heartbeats stopped)."""


class NotEnoughDevices(ServerError, TimeoutError):
    """Fewer devices than asked for connected before the deadline."""


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


class UploadTimeout(ServerError, TimeoutError):
    """An expected upload did not arrive before the deadline."""


class WorkloadError(ServerError):
    """A workload cannot go on: no device completed a step, devices disagree
    with the server (weights, model outputs), or it was used out of order."""
