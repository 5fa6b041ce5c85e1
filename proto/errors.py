"""Errors raised while encoding, framing, shaping or assembling transfers.

The server maps them to gRPC status codes in one place:
:class:`CodecError` -> ``INVALID_ARGUMENT`` (the sender sent something
malformed), :class:`TransferTooLarge` -> ``RESOURCE_EXHAUSTED`` (well formed,
but over the receiver's cap). Messages name the tensor and the offending
values so a log line alone is enough to see what went wrong.
"""
from edgebed import EdgebedError

__all__ = ["CodecError", "TransferError", "TransferTooLarge"]


class TransferError(EdgebedError):
    """Base class of everything that can go wrong moving tensors."""


class CodecError(TransferError, ValueError):
    """Malformed input: bytes disagree with dtype/shape, bad crc32, unknown
    dtype, frames out of order, missing headers, non-finite values to
    quantize. Also a ``ValueError`` so generic input validation catches it."""


class TransferTooLarge(TransferError):
    """A transfer announces or carries more payload bytes than the cap."""
