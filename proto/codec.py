"""Tensor codec: tensors <-> a stream of at most 1 MiB ``TransferFrame``s.

A tensor's payload is the raw little-endian bytes of its contiguous data
(bfloat16 travels as its int16 bit pattern; big-endian hosts byte-swap
explicitly), or the output of :mod:`edgebed.proto.quantize`. Every payload
carries a crc32. Frame 0 carries the ``TransferHeader``; the first frame of
each tensor carries its ``TensorHeader`` (and the first chunk of data, so a
small tensor costs one frame); a zero-element tensor still gets a frame.
:func:`iter_frame_parts` is that layout with each frame's data left as a
view of the payload, for serializers that avoid protobuf's copies.

The receiving side, :class:`FrameAssembler`, validates every frame as it
arrives and copies data straight into one preallocated buffer per tensor,
so assembling costs one copy and one crc pass per byte. The decoded tensors
are views of those buffers: writable, and nobody else holds them.
"""
from __future__ import annotations

import math
import os
import sys
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import (
    Iterable,
    Iterator,
    Mapping,
    NamedTuple,
    Sequence,
    Union,
)

import numpy as np
import torch
from edgebed.proto import edge_pb2 as pb
from edgebed.proto.errors import CodecError, TransferTooLarge
from edgebed.proto.quantize import (
    WIRE_DTYPE,
    QuantSpec,
    check_quantization,
    dequantize,
    dtype_name,
    packed_nbytes,
    quantize,
)
from edgebed.proto.shaping import MAX_CHUNK_BYTES, check_rate_bps, chunk_bytes_for_rate

__all__ = [
    "DEFAULT_MAX_TRANSFER_BYTES",
    "MAX_CHUNK_BYTES",
    "MAX_TRANSFER_MB",
    "SUPPORTED_DTYPES",
    "AssembledTransfer",
    "EncodedTensor",
    "FrameAssembler",
    "WireDType",
    "chunk_bytes_for_rate",
    "crc32",
    "crc32_combine",
    "decode_transfer",
    "encode_tensor",
    "encode_transfer",
    "iter_frame_parts",
    "iter_frames",
]

Buffer = Union[memoryview, bytes, bytearray]
_BIG_ENDIAN_HOST = sys.byteorder == "big"

# ---------------------------------------------------------------- crc32
# The sender must know a tensor's crc32 before its first frame goes out, so
# for a big payload the crc is pure latency (zlib does ~3-4 GB/s per core).
# zlib.crc32 releases the GIL, so big payloads are split over a few threads
# and the part crcs merged with crc32_combine (zlib's algorithm; the Python
# module does not expose it): crc(A+B) = crc(A) * x^(8*len(B)) mod P ^ crc(B)
# over the reflected polynomial.
_CRC_POLY = 0xEDB88320
_CRC_PARALLEL_MIN = 16 << 20  # below this, thread hand-off is not worth it
_CRC_PART_MIN = 8 << 20
_crc_pool: ThreadPoolExecutor | None = None
_crc_pool_lock = threading.Lock()


def _gf2_multmodp(a: int, b: int) -> int:
    """a * b modulo the crc polynomial (bit 31 is x^0: reflected)."""
    m, p = 1 << 31, 0
    while True:
        if a & m:
            p ^= b
            if a & (m - 1) == 0:
                return p
        m >>= 1
        b = (b >> 1) ^ _CRC_POLY if b & 1 else b >> 1


_X2N = [1 << 30]  # x^(2^k) mod P for k = 0..31
for _ in range(31):
    _X2N.append(_gf2_multmodp(_X2N[-1], _X2N[-1]))


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """crc32 of A+B from crc32(A), crc32(B) and len(B), in O(log len2)."""
    p, k = 1 << 31, 3  # p = x^0; x^(8*len2) built from x^(2^k), k >= 3
    while len2:
        if len2 & 1:
            p = _gf2_multmodp(_X2N[k & 31], p)
        len2 >>= 1
        k += 1
    return _gf2_multmodp(p, crc1) ^ crc2


def crc32(data: Buffer) -> int:
    """zlib.crc32 of a bytes-like object, split across threads when large."""
    global _crc_pool
    view = _byte_view(data)
    workers = min(os.cpu_count() or 1, 8, view.nbytes // _CRC_PART_MIN)
    if view.nbytes < _CRC_PARALLEL_MIN or workers < 2:
        return zlib.crc32(view)
    with _crc_pool_lock:
        if _crc_pool is None:
            _crc_pool = ThreadPoolExecutor(min(os.cpu_count() or 1, 8), "edgebed-crc32")
    step = -(-view.nbytes // workers)
    parts = [view[i:i + step] for i in range(0, view.nbytes, step)]
    crcs = list(_crc_pool.map(zlib.crc32, parts))
    crc = crcs[0]
    for part, part_crc in zip(parts[1:], crcs[1:]):
        crc = crc32_combine(crc, part_crc, part.nbytes)
    return crc


def _byte_view(data: Buffer) -> memoryview:
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


class WireDType(NamedTuple):
    name: str
    torch_dtype: torch.dtype
    itemsize: int
    numpy_dtype: np.dtype  # little-endian; what the payload bytes are read as


def _wire(name: str, torch_dtype: torch.dtype, numpy_code: str) -> WireDType:
    np_dtype = np.dtype(numpy_code)
    return WireDType(name, torch_dtype, np_dtype.itemsize, np_dtype)


SUPPORTED_DTYPES: dict[str, WireDType] = {
    w.name: w
    for w in (
        _wire("float32", torch.float32, "<f4"),
        _wire("float64", torch.float64, "<f8"),
        _wire("float16", torch.float16, "<f2"),
        _wire("bfloat16", torch.bfloat16, "<i2"),  # numpy has no bfloat16: bit pattern
        _wire("int8", torch.int8, "i1"),
        _wire("uint8", torch.uint8, "u1"),
        _wire("int16", torch.int16, "<i2"),
        _wire("int32", torch.int32, "<i4"),
        _wire("int64", torch.int64, "<i8"),
        _wire("bool", torch.bool, "?"),
    )
}
_BY_TORCH = {w.torch_dtype: w for w in SUPPORTED_DTYPES.values()}

@dataclass(frozen=True)
class EncodedTensor:
    """One tensor ready to frame: its header (crc32 included) and payload."""

    name: str
    header: pb.TensorHeader
    payload: Buffer


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    """Little-endian bytes of a tensor, zero-copy for contiguous CPU tensors."""
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    arr = t.numpy()
    if _BIG_ENDIAN_HOST and arr.dtype.itemsize > 1:
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    # The memoryview keeps the array, and the array the tensor, alive.
    return memoryview(arr.reshape(-1).view(np.uint8))


def encode_tensor(
    name: str, tensor: torch.Tensor, quant: QuantSpec | None = None
) -> EncodedTensor:
    """Header and payload of one tensor, quantized by ``quant`` if lossy.

    Lossy schemes apply to floating-point tensors only: integer and bool
    tensors (indices, masks, BatchNorm's ``num_batches_tracked``) always go
    raw, so one spec can be passed for a whole state dict.
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor {name!r}: expected a torch.Tensor, got {type(tensor).__name__}")
    if tensor.layout != torch.strided:
        raise CodecError(f"tensor {name!r}: layout {tensor.layout} is not supported; densify it")
    if tensor.dtype not in _BY_TORCH:
        raise CodecError(
            f"tensor {name!r}: dtype {dtype_name(tensor.dtype)} is not supported on the wire "
            f"(supported: {', '.join(SUPPORTED_DTYPES)})"
        )
    header = pb.TensorHeader(name=name, shape=tuple(tensor.shape))
    if quant is not None and quant.lossy and tensor.is_floating_point():
        payload, q = quantize(tensor, quant)
        header.dtype = WIRE_DTYPE[quant.scheme]
        header.quant.CopyFrom(q)
        data = _tensor_bytes(payload) if isinstance(payload, torch.Tensor) else payload
    else:
        header.dtype = _BY_TORCH[tensor.dtype].name
        data = _tensor_bytes(tensor)
    header.payload_bytes = data.nbytes
    header.crc32 = crc32(data)
    return EncodedTensor(name, header, data)


def iter_frame_parts(
    encoded: Sequence[EncodedTensor],
    *,
    device_id: str,
    key: str,
    rate_bps: float = 0.0,
    meta: Mapping[str, str] | None = None,
    chunk_bytes: int | None = None,
) -> Iterator[tuple[pb.TransferFrame, memoryview]]:
    """The frame layout of one transfer: ``(frame without data, data view)``.

    The one place that decides sequence numbers, where headers go and where
    chunks split. Arguments are checked now; frames are built lazily.
    ``iter_frames`` fills ``data`` in; ``wire.iter_out_frames`` serializes
    the view without copying it first. ``chunk_bytes`` defaults to the
    pacing granularity of ``rate_bps`` (1 MiB when unshaped).
    """
    if chunk_bytes is None:
        chunk_bytes = chunk_bytes_for_rate(rate_bps)
    if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int):
        raise TypeError(f"chunk_bytes must be an int, got {chunk_bytes!r}")
    if not 1 <= chunk_bytes <= MAX_CHUNK_BYTES:
        raise ValueError(f"chunk_bytes must be in 1..{MAX_CHUNK_BYTES}, got {chunk_bytes}")
    encoded = list(encoded)
    names = [e.name for e in encoded]
    if len(set(names)) != len(names):
        dups = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"duplicate tensor names in one transfer: {dups}")
    transfer = pb.TransferHeader(
        device_id=device_id,
        key=key,
        num_tensors=len(encoded),
        total_bytes=sum(e.header.payload_bytes for e in encoded),
        rate_bps=check_rate_bps(rate_bps),
        meta=dict(meta or {}),
    )
    return _frame_parts(encoded, transfer, chunk_bytes)


def iter_frames(
    encoded: Sequence[EncodedTensor],
    *,
    device_id: str,
    key: str,
    rate_bps: float = 0.0,
    meta: Mapping[str, str] | None = None,
    chunk_bytes: int | None = None,
) -> Iterator[pb.TransferFrame]:
    """Frames of one transfer; ``chunk_bytes`` caps each frame's data and
    defaults to the pacing granularity of ``rate_bps``."""
    parts = iter_frame_parts(encoded, device_id=device_id, key=key, rate_bps=rate_bps,
                             meta=meta, chunk_bytes=chunk_bytes)
    return _with_data(parts)


def _with_data(
    parts: Iterator[tuple[pb.TransferFrame, memoryview]],
) -> Iterator[pb.TransferFrame]:
    for frame, data in parts:
        # protobuf only takes bytes: this copy is what wire.py avoids.
        frame.data = data.tobytes()
        yield frame


_EMPTY = memoryview(b"")


def _frame_parts(
    encoded: list[EncodedTensor], transfer: pb.TransferHeader, chunk_bytes: int
) -> Iterator[tuple[pb.TransferFrame, memoryview]]:
    seq = 0
    if not encoded:
        yield pb.TransferFrame(seq=0, transfer=transfer), _EMPTY
        return
    for enc in encoded:
        view = _byte_view(enc.payload)
        assert view.nbytes == enc.header.payload_bytes, "payload does not match its header"
        start = 0
        while True:  # at least one frame per tensor, even with no data
            stop = min(start + chunk_bytes, view.nbytes)
            frame = pb.TransferFrame(seq=seq)
            if seq == 0:
                frame.transfer.CopyFrom(transfer)
            if start == 0:
                frame.tensor.CopyFrom(enc.header)
            yield frame, view[start:stop]
            seq += 1
            start = stop
            if start >= view.nbytes:
                break


QuantArg = Union[None, QuantSpec, Mapping[str, QuantSpec]]


def encode_tensors(items: Sequence[tuple[str, torch.Tensor]] | Mapping[str, torch.Tensor],
                   quant: QuantArg = None) -> list[EncodedTensor]:
    """Encode named tensors; ``quant`` is one spec for every floating-point
    tensor or a per-name mapping (names it leaves out go raw)."""
    pairs = list(items.items()) if isinstance(items, Mapping) else list(items)
    specs = quant if isinstance(quant, Mapping) else {}
    return [encode_tensor(name, t, quant if isinstance(quant, QuantSpec) else specs.get(name))
            for name, t in pairs]


def encode_transfer(
    tensors: Mapping[str, torch.Tensor] | Sequence[tuple[str, torch.Tensor]],
    *,
    device_id: str = "",
    key: str = "",
    rate_bps: float = 0.0,
    meta: Mapping[str, str] | None = None,
    quant: QuantArg = None,
    chunk_bytes: int = MAX_CHUNK_BYTES,
) -> Iterator[pb.TransferFrame]:
    """Encode named tensors and return their frames.

    ``quant`` is one spec for every floating-point tensor or a per-name
    mapping (see :func:`encode_tensor`). All tensors are encoded up front
    because frame 0 announces the total payload size.
    """
    items = list(tensors.items()) if isinstance(tensors, Mapping) else list(tensors)
    encoded = encode_tensors(items, quant)
    return iter_frames(
        encoded, device_id=device_id, key=key, rate_bps=rate_bps, meta=meta,
        chunk_bytes=chunk_bytes,
    )


@dataclass
class AssembledTransfer:
    """A received transfer: who sent what, and the decoded tensors."""

    device_id: str
    key: str
    rate_bps: float
    meta: dict[str, str]
    tensors: dict[str, torch.Tensor]  # in wire order, source dtypes restored
    payload_bytes: int
    num_frames: int = 0


#: The default cap (FrameAssembler ``max_bytes``) on what one transfer may
#: make its receiver hold, for a server's uploads and a device's downloads.
DEFAULT_MAX_TRANSFER_BYTES = 2 * 1024 ** 3
#: The largest cap the command lines accept, in MiB: 1 TiB, more than any
#: board or edge server holds, so a larger one is a slip, not a setting.
MAX_TRANSFER_MB = 1024 * 1024

#: Bounds on what a transfer's headers may carry (a receiver checks them
#: before it allocates anything).
MAX_META_ENTRIES = 64
MAX_TEXT_CHARS = 1024      # a key, a device id, a meta key or value
MAX_NAME_CHARS = 256       # a tensor name
# An allowance for what holding one tensor costs beyond its bytes (the
# tensor object, its storage and shape): a round figure that keeps many tiny
# tensors from slipping under the cap, not a measured cost.
TENSOR_OVERHEAD_BYTES = 1024


@dataclass
class _Slot:
    """One tensor being received."""

    header: pb.TensorHeader
    shape: tuple[int, ...]
    buf: np.ndarray
    filled: int = 0
    crc: int = 0

    @property
    def name(self) -> str:
        return self.header.name

    @property
    def complete(self) -> bool:
        return self.filled == self.buf.size


@dataclass
class _Transfer:
    header: pb.TransferHeader
    slots: list[_Slot] = field(default_factory=list)
    names: set[str] = field(default_factory=set)
    announced: int = 0  # payload_bytes of the tensor headers seen so far
    received: int = 0
    retained: int = 0   # what the receiver will hold: payload, decoded tensors, metadata


class FrameAssembler:
    """Validates the frames of one transfer as they arrive and rebuilds it.

    ``feed`` raises :class:`CodecError` on the first malformed frame and
    :class:`TransferTooLarge` once what the transfer would hold (payload,
    the tensors it decodes to and its metadata) is (announced to be) over
    ``max_bytes`` (0 = no cap); both before allocating. It
    returns True once every announced tensor is complete, which is how a
    bidirectional stream knows where one transfer ends. ``finish`` checks
    counts and crc32s and decodes. An assembler is good for one transfer.
    """

    def __init__(self, max_bytes: int = 0) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
            raise TypeError(f"max_bytes must be an int, got {max_bytes!r}")
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0 (0 = no cap), got {max_bytes}")
        self.max_bytes = max_bytes
        self._t: _Transfer | None = None
        self._next_seq = 0
        self._closed = ""  # why feed/finish may no longer be called

    @property
    def payload_bytes(self) -> int:
        """Data bytes received so far."""
        return self._t.received if self._t is not None else 0

    @property
    def complete(self) -> bool:
        t = self._t
        return (
            t is not None
            and len(t.slots) == t.header.num_tensors
            and (not t.slots or t.slots[-1].complete)
        )

    def feed(self, frame: pb.TransferFrame) -> bool:
        if self._closed:
            raise CodecError(f"frame {frame.seq} fed to an assembler that {self._closed}")
        try:
            self._feed(frame)
        except Exception:
            self._closed = "already failed"
            raise
        return self.complete

    def _feed(self, frame: pb.TransferFrame) -> None:
        seq = frame.seq
        if self._t is None:
            if seq != 0:
                raise CodecError(f"chunks out of order: expected seq 0, got {seq}")
            if not frame.HasField("transfer"):
                raise CodecError("frame 0 carries no transfer header")
            self._start(frame.transfer)
        else:
            if seq != self._next_seq:
                raise CodecError(
                    f"chunks out of order: expected seq {self._next_seq}, got {seq}"
                )
            if frame.HasField("transfer"):
                raise CodecError(f"frame {seq} repeats the transfer header")
        self._next_seq = seq + 1
        if frame.HasField("tensor"):
            self._open(frame.tensor, seq)
        # upb hands out a fresh copy per access, so read once; wire.InFrame
        # gives a memoryview into the received message instead.
        data = frame.data
        if data:
            self._append(data, seq)

    def _start(self, header: pb.TransferHeader) -> None:
        if self.max_bytes and header.total_bytes > self.max_bytes:
            raise TransferTooLarge(
                f"transfer {header.key[:MAX_TEXT_CHARS]!r} announces {header.total_bytes} "
                f"payload bytes, over the cap of {self.max_bytes} bytes"
            )
        if len(header.meta) > MAX_META_ENTRIES:
            raise TransferTooLarge(f"transfer meta has {len(header.meta)} entries (at most "
                                   f"{MAX_META_ENTRIES})")
        texts = [header.key, header.device_id, *header.meta.keys(), *header.meta.values()]
        if any(len(text) > MAX_TEXT_CHARS for text in texts):
            raise TransferTooLarge(f"a key, device id or meta entry of the transfer is over "
                                   f"{MAX_TEXT_CHARS} characters")
        self._t = _Transfer(header, retained=sum(len(text) for text in texts))

    def _open(self, th: pb.TensorHeader, seq: int) -> None:
        t = self._t
        name = th.name
        if len(name) > MAX_NAME_CHARS:
            raise TransferTooLarge(f"a tensor name of {len(name)} characters (at most "
                                   f"{MAX_NAME_CHARS})")
        if t.slots and not t.slots[-1].complete:
            prev = t.slots[-1]
            raise CodecError(
                f"tensor {name!r} starts in frame {seq} before tensor {prev.name!r} is complete "
                f"({prev.filled} of {prev.buf.size} bytes)"
            )
        if len(t.slots) >= t.header.num_tensors:
            raise CodecError(
                f"too many tensors: transfer announced {t.header.num_tensors}, "
                f"frame {seq} starts another ({name!r})"
            )
        if name in t.names:
            raise CodecError(f"tensor {name!r} appears twice in one transfer")
        wire = SUPPORTED_DTYPES.get(th.dtype)
        if wire is None:
            raise CodecError(
                f"tensor {name!r}: unknown dtype {th.dtype!r} "
                f"(supported: {', '.join(SUPPORTED_DTYPES)})"
            )
        shape = tuple(th.shape)
        if any(d < 0 for d in shape):
            raise CodecError(f"tensor {name!r}: negative dimension in shape {shape}")
        numel = math.prod(shape)
        if th.HasField("quant"):
            check_quantization(th.quant, th.dtype, name)
        if th.HasField("quant") and th.quant.scheme == "uniform":
            need = packed_nbytes(numel, th.quant.bits)
            what = f"{th.quant.bits}-bit uniform levels of shape {shape}"
        else:
            need = numel * wire.itemsize
            what = f"{wire.name} shape {shape}"
        if th.payload_bytes != need:
            raise CodecError(
                f"tensor {name!r}: payload has {th.payload_bytes} bytes but {what} needs {need}"
            )
        announced = t.announced + need
        # Held once decoded: the payload, the tensor it dequantizes to (1-bit
        # levels of a float64 tensor decode to 64 times their wire size), the
        # name, and an allowance per tensor. This is at least ``announced``,
        # so one check against the cap covers the payload too.
        decoded = 0
        if th.HasField("quant") and th.quant.scheme != "none":
            decoded = numel * SUPPORTED_DTYPES[th.quant.source_dtype].itemsize
        retained = t.retained + need + decoded + len(name) + TENSOR_OVERHEAD_BYTES
        if self.max_bytes and retained > self.max_bytes:
            raise TransferTooLarge(
                f"tensor {name!r} brings the transfer to {announced} payload bytes, and what "
                f"it decodes to (payload, decoded tensors and metadata) to {retained} bytes, "
                f"over the cap of {self.max_bytes} bytes"
            )
        t.retained = retained
        if announced > t.header.total_bytes:
            raise CodecError(
                f"tensor {name!r} brings the transfer to {announced} payload bytes, more than "
                f"the {t.header.total_bytes} total_bytes its header announced"
            )
        t.announced = announced
        t.names.add(name)
        # np.empty, not bytearray: no zero-fill pass, and the array owns the
        # memory the decoded tensor will view.
        t.slots.append(_Slot(th, shape, np.empty(need, np.uint8)))

    def _append(self, data: Buffer, seq: int) -> None:
        t = self._t
        slot = t.slots[-1] if t.slots else None
        if slot is None or slot.complete:
            after = f" after tensor {slot.name!r} is complete" if slot else ""
            raise CodecError(
                f"frame {seq} carries {len(data)} data bytes but no tensor header{after}"
            )
        end = slot.filled + len(data)
        if end > slot.buf.size:
            raise CodecError(
                f"tensor {slot.name!r}: frame {seq} brings its data to {end} bytes, "
                f"beyond the announced payload_bytes {slot.buf.size}"
            )
        if self.max_bytes and t.received + len(data) > self.max_bytes:
            raise TransferTooLarge(
                f"transfer data reaches {t.received + len(data)} bytes, "
                f"over the cap of {self.max_bytes} bytes"
            )
        slot.buf[slot.filled:end] = np.frombuffer(data, np.uint8)
        # crc while the chunk is still in cache rather than in a second pass.
        slot.crc = zlib.crc32(data, slot.crc)
        slot.filled = end
        t.received += len(data)

    def finish(self) -> AssembledTransfer:
        """Check the transfer is whole and intact, and decode its tensors."""
        if self._closed:
            raise CodecError(f"finish() called on an assembler that {self._closed}")
        self._closed = "already finished"
        t = self._t
        if t is None:
            raise CodecError("no frames received: transfer header missing")
        if t.slots and not t.slots[-1].complete:
            last = t.slots[-1]
            raise CodecError(
                f"tensor {last.name!r} incomplete: received {last.filled} of "
                f"{last.buf.size} bytes"
            )
        if len(t.slots) != t.header.num_tensors:
            raise CodecError(
                f"too few tensors: transfer announced {t.header.num_tensors}, "
                f"received {len(t.slots)}"
            )
        if t.received != t.header.total_bytes:
            raise CodecError(
                f"transfer announced total_bytes {t.header.total_bytes} "
                f"but its tensors carry {t.received}"
            )
        for slot in t.slots:
            if slot.crc != slot.header.crc32:
                raise CodecError(
                    f"tensor {slot.name!r}: crc32 mismatch: header 0x{slot.header.crc32:08x}, "
                    f"computed 0x{slot.crc:08x}"
                )
        tensors = {slot.name: _decode(slot) for slot in t.slots}
        self._t = None  # drop the buffers' last other reference
        return AssembledTransfer(
            device_id=t.header.device_id,
            key=t.header.key,
            rate_bps=t.header.rate_bps,
            meta=dict(t.header.meta),
            tensors=tensors,
            payload_bytes=t.received,
            num_frames=self._next_seq,
        )


def _decode(slot: _Slot) -> torch.Tensor:
    th = slot.header
    quant = th.quant if th.HasField("quant") and th.quant.scheme != "none" else None
    if quant is not None and quant.scheme == "uniform":
        return dequantize(slot.buf, quant, slot.shape)
    wire = SUPPORTED_DTYPES[th.dtype]
    if wire.name == "bool" and slot.buf.size and int(slot.buf.max()) > 1:
        raise CodecError(f"tensor {slot.name!r}: bool payload holds bytes other than 0 and 1")
    arr = slot.buf.view(wire.numpy_dtype)
    if _BIG_ENDIAN_HOST and wire.itemsize > 1:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    tensor = torch.from_numpy(arr.reshape(slot.shape))
    if wire.name == "bfloat16":
        tensor = tensor.view(torch.bfloat16)
    if quant is not None:
        tensor = dequantize(tensor, quant, slot.shape)
    return tensor


def decode_transfer(
    frames: Iterable[pb.TransferFrame], max_bytes: int = 0
) -> AssembledTransfer:
    """Assemble every frame of ``frames`` (one whole transfer) and finish."""
    assembler = FrameAssembler(max_bytes)
    for frame in frames:
        assembler.feed(frame)
    return assembler.finish()
