"""Lossy tensor quantization for the wire, and its inverse.

Schemes (``QuantSpec.scheme``), with the error bound of a round trip for a
finite floating-point tensor ``x`` (``x_hat = dequantize(quantize(x))``):

``"none"``
    The tensor goes as is; exact. Non-finite values pass through untouched.
``"float16"``
    A cast to float16 (wire dtype ``float16``). Relative error at most 2**-11
    in the normal range, absolute at most 2**-25 below it. Values beyond
    +-65504 are rejected rather than silently turned into infinities.
``"int8"``
    Symmetric per-tensor: ``scale = max|x| / 127``, ``q = round(x / scale)``
    in -127..127 (wire dtype ``int8``); ``|x - x_hat| <= scale / 2``.
``"uniform"`` (``bits`` = b in 1..32)
    Min/max affine: ``offset = min(x)``, ``scale = (max(x) - min(x)) /
    (2**b - 1)``, level ``round((x - offset) / scale)`` in 0..2**b-1, packed
    densely at b bits per element (wire dtype ``uint8``, ``ceil(n*b/8)``
    bytes). ``|x - x_hat| <= scale / 2``. A constant tensor (``scale == 0``)
    round-trips exactly.

The arithmetic is float64, whose rounding adds about 2**(b-52) * scale
(negligible unless b is near 32), and restoring the source dtype adds at
most half an ulp of that dtype at the value. Lossy schemes
need a floating-point tensor and reject NaN and infinities with
:class:`~edgebed.proto.errors.CodecError`.

Bit packing is little-endian in both senses: bit j of element i is bit
``(i*b + j) % 8`` of byte ``(i*b + j) // 8``. So for b in {8, 16, 32} the
packed stream is just the little-endian levels, and otherwise it is what a
C bitstream writer filling each byte from the least significant bit emits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import torch
from edgebed.proto import edge_pb2 as pb
from edgebed.proto.errors import CodecError

__all__ = [
    "SCHEMES",
    "WIRE_DTYPE",
    "QuantSpec",
    "check_quantization",
    "dequantize",
    "pack_levels",
    "packed_nbytes",
    "quantize",
    "unpack_levels",
]

SCHEMES = ("none", "float16", "int8", "uniform")
# Wire dtype of each scheme's payload ("none" keeps the tensor's own dtype).
WIRE_DTYPE = {"float16": "float16", "int8": "int8", "uniform": "uint8"}
_FLOAT_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
_FLOAT16_MAX = 65504.0
# Elements per packing block: bounds the (block x bits) scratch arrays; a
# multiple of 8 so every block starts on a byte boundary of the stream.
_BLOCK = 1 << 20

Payload = Union[torch.Tensor, memoryview, bytes, bytearray, np.ndarray]


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"`` (the names the wire uses)."""
    return str(dtype).rsplit(".", 1)[-1]


@dataclass(frozen=True)
class QuantSpec:
    """How to quantize one tensor for the wire; ``bits`` only for "uniform"."""

    scheme: str = "none"
    bits: int = 0

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(
                f"unknown quantization scheme {self.scheme!r}; expected one of {SCHEMES}"
            )
        if isinstance(self.bits, bool) or not isinstance(self.bits, int):
            raise TypeError(f"quantization bits must be an int, got {self.bits!r}")
        if self.scheme == "uniform":
            if not 1 <= self.bits <= 32:
                raise ValueError(f"uniform quantization needs bits in 1..32, got {self.bits}")
        elif self.bits != 0:
            raise ValueError(
                f"bits={self.bits} given for scheme {self.scheme!r}; only 'uniform' takes bits"
            )

    @property
    def lossy(self) -> bool:
        return self.scheme != "none"


def packed_nbytes(numel: int, bits: int) -> int:
    """Bytes of ``numel`` levels packed at ``bits`` each: ceil(numel*bits/8)."""
    return (numel * bits + 7) // 8


def _level_dtype(bits: int) -> np.dtype:
    # Smallest little-endian unsigned type holding a level; explicit '<' so
    # the byte view below is the wire order on big-endian hosts too.
    return np.dtype("u1" if bits <= 8 else "<u2" if bits <= 16 else "<u4")


def pack_levels(levels: np.ndarray, bits: int) -> np.ndarray:
    """Pack integer levels (each < 2**bits) into a uint8 array, LSB first."""
    dt = _level_dtype(bits)
    levels = np.ascontiguousarray(levels, dtype=dt).reshape(-1)
    if bits == 8 * dt.itemsize:  # byte-aligned: the LE values are the stream
        return levels.view(np.uint8)
    n = levels.size
    out = np.empty(packed_nbytes(n, bits), np.uint8)
    as_bytes = levels.view(np.uint8).reshape(n, dt.itemsize)
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        # Keep the low `bits` bits of each element, then repack the rows
        # back to back; the last block may end mid-byte (packbits zero-pads).
        bitrows = np.unpackbits(as_bytes[start:stop], axis=1, count=bits, bitorder="little")
        chunk = np.packbits(bitrows.reshape(-1), bitorder="little")
        first = start * bits // 8
        out[first:first + chunk.size] = chunk
    return out


def unpack_levels(packed: np.ndarray, bits: int, numel: int) -> np.ndarray:
    """Inverse of :func:`pack_levels`: ``numel`` levels as uint8/16/32 (LE)."""
    dt = _level_dtype(bits)
    packed = np.asarray(packed, dtype=np.uint8).reshape(-1)
    if packed.size != packed_nbytes(numel, bits):
        raise CodecError(
            f"packed payload has {packed.size} bytes but {numel} levels at {bits} bits "
            f"need {packed_nbytes(numel, bits)}"
        )
    if bits == 8 * dt.itemsize:
        return packed.view(dt)
    out = np.empty(numel, dt)
    width = 8 * dt.itemsize
    # Scratch rows of `width` bits whose high (width - bits) bits stay zero;
    # packing them flat is numpy's fast path (packbits along a short axis is
    # several times slower).
    wide = np.zeros((min(_BLOCK, numel), width), np.uint8)
    for start in range(0, numel, _BLOCK):
        stop = min(start + _BLOCK, numel)
        m = stop - start
        first = start * bits // 8
        src = packed[first:first + packed_nbytes(m, bits)]
        rows = wide[:m]
        rows[:, :bits] = np.unpackbits(src, count=m * bits, bitorder="little").reshape(m, bits)
        out[start:stop] = np.packbits(rows.reshape(-1), bitorder="little").view(dt)
    return out


def _float_source(tensor: torch.Tensor, scheme: str) -> tuple[torch.Tensor, float, float]:
    """CPU float tensor and its finite min/max, or CodecError."""
    if tensor.dtype not in _FLOAT_DTYPES.values():
        raise CodecError(
            f"quantization {scheme!r} needs a floating-point tensor, got {dtype_name(tensor.dtype)}"
        )
    t = tensor.detach().cpu()
    if t.numel() == 0:
        return t, 0.0, 0.0
    # min/max propagate NaN, so two reductions also catch NaN and +-inf
    # without a separate isfinite pass over the data.
    lo, hi = float(t.min()), float(t.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise CodecError(
            f"cannot quantize ({scheme}) a tensor holding NaN or infinity (min {lo}, max {hi})"
        )
    return t, lo, hi


def _as_float64(t: torch.Tensor) -> np.ndarray:
    # Read-only use only: for float64 input this is the caller's memory.
    return t.to(torch.float64).numpy().reshape(-1)


def quantize(tensor: torch.Tensor, spec: QuantSpec) -> tuple[Payload, pb.Quantization]:
    """Quantize for the wire: ``(payload, quantization header)``.

    The payload is a tensor of the wire dtype for "none" (the input itself),
    "float16" and "int8", and a flat uint8 ``memoryview`` of the packed levels
    for "uniform". The header records the source dtype restored on decode.
    """
    source = dtype_name(tensor.dtype)
    if not spec.lossy:
        return tensor, pb.Quantization(scheme="none", source_dtype=source)
    t, lo, hi = _float_source(tensor, spec.scheme)
    if spec.scheme == "float16":
        peak = max(-lo, hi)
        if peak > _FLOAT16_MAX:
            raise CodecError(f"cannot quantize to float16: |x| reaches {peak}, beyond +-65504")
        return t.to(torch.float16), pb.Quantization(
            scheme="float16", bits=16, source_dtype=source
        )
    if spec.scheme == "int8":
        scale = max(-lo, hi) / 127.0
        if scale == 0.0:  # all zeros (or max|x| so tiny the scale underflows)
            q = np.zeros(t.numel(), np.int8)
        else:
            y = _as_float64(t) / scale
            np.rint(y, out=y)
            np.clip(y, -127, 127, out=y)
            q = y.astype(np.int8)
        quant = pb.Quantization(scheme="int8", bits=8, scale=scale, source_dtype=source)
        return torch.from_numpy(q).reshape(t.shape), quant
    # uniform
    levels_max = (1 << spec.bits) - 1
    scale = (hi - lo) / levels_max
    if not np.isfinite(scale):
        raise CodecError(f"value range [{lo}, {hi}] overflows float64; cannot quantize")
    if scale == 0.0:  # constant tensor: every level is 0 and offset is exact
        levels = np.zeros(t.numel(), _level_dtype(spec.bits))
    else:
        y = _as_float64(t) - lo
        y /= scale
        np.rint(y, out=y)
        np.clip(y, 0, levels_max, out=y)
        levels = y.astype(_level_dtype(spec.bits))
    quant = pb.Quantization(
        scheme="uniform", bits=spec.bits, scale=scale, offset=lo, source_dtype=source
    )
    return memoryview(pack_levels(levels, spec.bits)), quant


def check_quantization(quant: pb.Quantization, wire_dtype: str, name: str = "") -> None:
    """Validate a received Quantization header against the payload dtype."""
    where = f"tensor {name!r}: " if name else ""
    scheme = quant.scheme
    if not scheme:  # a header that is there names its scheme ("none" too)
        raise CodecError(f"{where}quant.scheme is empty (name the scheme, or send no "
                         "quant header)")
    if scheme not in SCHEMES:
        raise CodecError(f"{where}unknown quantization scheme {scheme!r}")
    if scheme == "none":
        if quant.source_dtype not in ("", wire_dtype):
            raise CodecError(
                f"{where}scheme 'none' but source dtype {quant.source_dtype!r} "
                f"differs from wire dtype {wire_dtype!r}"
            )
        return
    if quant.source_dtype not in _FLOAT_DTYPES:
        raise CodecError(
            f"{where}quantization {scheme!r} has source dtype {quant.source_dtype!r}; "
            f"expected one of {sorted(_FLOAT_DTYPES)}"
        )
    if WIRE_DTYPE[scheme] != wire_dtype:
        raise CodecError(
            f"{where}quantization {scheme!r} needs wire dtype {WIRE_DTYPE[scheme]!r}, "
            f"got {wire_dtype!r}"
        )
    if scheme == "uniform" and not 1 <= quant.bits <= 32:
        raise CodecError(f"{where}uniform quantization needs bits in 1..32, got {quant.bits}")
    if not (np.isfinite(quant.scale) and quant.scale >= 0 and np.isfinite(quant.offset)):
        raise CodecError(
            f"{where}quantization scale {quant.scale} / offset {quant.offset} must be "
            "finite with scale >= 0"
        )


def _as_uint8(payload: Payload) -> np.ndarray:
    if isinstance(payload, torch.Tensor):
        return payload.detach().cpu().contiguous().reshape(-1).numpy().view(np.uint8)
    return np.frombuffer(payload, dtype=np.uint8)


def dequantize(
    payload: Payload, quant: pb.Quantization, shape: Sequence[int]
) -> torch.Tensor:
    """Inverse of :func:`quantize`: a tensor of ``quant.source_dtype``.

    ``payload`` is the wire-dtype tensor for "none", "float16" and "int8";
    for "uniform" the packed bytes (bytes-like, uint8 array or tensor).
    """
    scheme = quant.scheme
    shape = tuple(int(d) for d in shape)
    if scheme == "uniform":
        check_quantization(quant, "uint8")
        numel = math.prod(shape)
        levels = unpack_levels(_as_uint8(payload), quant.bits, numel)
        if quant.scale == 0.0:  # constant: offset is exact (and keeps -0.0)
            return torch.full(shape, quant.offset, dtype=torch.float64).to(
                _FLOAT_DTYPES[quant.source_dtype]
            )
        x = levels.astype(np.float64)
        x *= quant.scale
        x += quant.offset
        return torch.from_numpy(x).reshape(shape).to(_FLOAT_DTYPES[quant.source_dtype])
    if not isinstance(payload, torch.Tensor):
        raise TypeError(f"scheme {scheme!r} expects a tensor payload, got {type(payload)}")
    check_quantization(quant, dtype_name(payload.dtype))
    if scheme == "none":
        return payload.reshape(shape)
    target = _FLOAT_DTYPES[quant.source_dtype]
    if scheme == "float16":
        return payload.reshape(shape).to(target)
    # int8
    x = payload.reshape(-1).numpy().astype(np.float64)
    x *= quant.scale
    return torch.from_numpy(x).reshape(shape).to(target)


def quant_for_bits(bits: int) -> Optional[QuantSpec]:
    """b-bit uniform quantization of a gradient; 32 bits means raw float32.

    Devices and server call this one function, so both ends agree on what a
    round's ``bits`` means."""
    return None if int(bits) >= 32 else QuantSpec("uniform", int(bits))
