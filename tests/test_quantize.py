"""Quantization: spec validation, error bounds, exact constants, bit packing."""
import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgebed.proto import edge_pb2 as pb
from edgebed.proto import quantize as qmod
from edgebed.proto.errors import CodecError, TransferError
from edgebed.proto.quantize import (
    QuantSpec,
    check_quantization,
    dequantize,
    pack_levels,
    packed_nbytes,
    quantize,
    unpack_levels,
)

SETTINGS = settings(max_examples=60, deadline=None)
FLOAT_TORCH = {"float32": torch.float32, "float64": torch.float64,
               "float16": torch.float16, "bfloat16": torch.bfloat16}
EPS = {"float32": 2.0 ** -24, "float64": 2.0 ** -53, "float16": 2.0 ** -11,
       "bfloat16": 2.0 ** -8}

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=9)
finite32 = st.floats(-2.0 ** 100, 2.0 ** 100, width=32)


def round_trip(x: torch.Tensor, spec: QuantSpec) -> "tuple[torch.Tensor, pb.Quantization]":
    payload, quant = quantize(x, spec)
    return dequantize(payload, quant, tuple(x.shape)), quant


def within_bound(x: torch.Tensor, y: torch.Tensor, scale: float, dtype: str, bits=8) -> bool:
    """|x - y| <= scale/2, plus the source dtype's rounding of the result and
    float64 rounding of levels up to 2**bits."""
    x64, y64 = x.double(), y.double()
    slack = EPS[dtype] * torch.maximum(x64.abs(), y64.abs()) + 2.0 ** (bits - 50) * scale
    return bool(((x64 - y64).abs() <= scale / 2 + slack).all())


# ---------------------------------------------------------------- spec

def test_spec_defaults_and_frozen():
    spec = QuantSpec()
    assert (spec.scheme, spec.bits, spec.lossy) == ("none", 0, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.bits = 3  # type: ignore[misc]
    assert QuantSpec(**{"scheme": "uniform", "bits": 4}) == QuantSpec("uniform", 4)


@pytest.mark.parametrize("kwargs, needle", [
    ({"scheme": "int4"}, "'int4'"),
    ({"scheme": "uniform"}, "got 0"),
    ({"scheme": "uniform", "bits": 33}, "got 33"),
    ({"scheme": "uniform", "bits": -1}, "got -1"),
    ({"scheme": "int8", "bits": 4}, "bits=4"),
    ({"scheme": "none", "bits": 8}, "bits=8"),
])
def test_spec_rejects_bad_values_by_name(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        QuantSpec(**kwargs)


def test_spec_rejects_non_int_bits():
    with pytest.raises(TypeError, match="2.5"):
        QuantSpec("uniform", 2.5)  # type: ignore[arg-type]


# ---------------------------------------------------------------- bounds

@SETTINGS
@given(hnp.arrays(np.float32, shapes, elements=finite32), st.integers(1, 32))
def test_uniform_error_within_half_scale(arr, bits):
    x = torch.from_numpy(arr)
    y, quant = round_trip(x, QuantSpec("uniform", bits))
    assert y.dtype == torch.float32 and y.shape == x.shape
    if x.numel():
        lo, hi = float(x.min()), float(x.max())
        assert quant.offset == lo
        assert quant.scale == pytest.approx((hi - lo) / (2 ** bits - 1), rel=1e-12)
    assert within_bound(x, y, quant.scale, "float32", bits)


@SETTINGS
@given(hnp.arrays(np.float64, shapes,
                  elements=st.floats(-1e12, 1e12, allow_nan=False, allow_subnormal=False)),
       st.integers(1, 32), st.sampled_from(["float64", "float32", "float16", "bfloat16"]))
def test_uniform_bound_for_every_float_source(arr, bits, dtype):
    x = torch.from_numpy(arr).to(FLOAT_TORCH[dtype])
    if not torch.isfinite(x).all():  # float16 overflow of the drawn values
        return
    y, quant = round_trip(x, QuantSpec("uniform", bits))
    assert y.dtype == x.dtype
    assert within_bound(x, y, quant.scale, dtype, bits)


@SETTINGS
@given(hnp.arrays(np.float32, shapes, elements=finite32))
def test_int8_error_within_half_scale(arr):
    x = torch.from_numpy(arr)
    payload, quant = quantize(x, QuantSpec("int8"))
    assert payload.dtype == torch.int8 and payload.shape == x.shape
    if x.numel():
        assert quant.scale == pytest.approx(float(x.abs().max()) / 127, rel=1e-12)
        assert int(payload.abs().max()) <= 127
    y = dequantize(payload, quant, x.shape)
    assert within_bound(x, y, quant.scale, "float32")


@SETTINGS
@given(hnp.arrays(np.float32, shapes, elements=st.floats(-65504, 65504, width=32)))
def test_float16_relative_error(arr):
    x = torch.from_numpy(arr)
    y, quant = round_trip(x, QuantSpec("float16"))
    assert quant.source_dtype == "float32" and y.dtype == torch.float32
    err = (x.double() - y.double()).abs()
    assert bool((err <= x.double().abs() * 2.0 ** -11 + 2.0 ** -25).all())


# ---------------------------------------------------------------- exactness

@SETTINGS
@given(st.floats(-2.0 ** 100, 2.0 ** 100, width=32), shapes, st.integers(1, 32),
       st.sampled_from(sorted(FLOAT_TORCH)))
def test_constant_tensors_round_trip_exactly(value, shape, bits, dtype):
    x = torch.full(shape, value, dtype=torch.float32).to(FLOAT_TORCH[dtype])
    if not torch.isfinite(x).all():
        return
    y, quant = round_trip(x, QuantSpec("uniform", bits))
    assert quant.scale == 0.0
    assert y.dtype == x.dtype and torch.equal(y, x)


def test_none_scheme_is_identity_and_keeps_nan():
    x = torch.tensor([1.0, float("nan"), float("inf")])
    payload, quant = quantize(x, QuantSpec())
    assert payload is x and quant.scheme == "none" and quant.source_dtype == "float32"
    y = dequantize(payload, quant, (3,))
    assert torch.equal(y[[0, 2]], x[[0, 2]]) and torch.isnan(y[1])


@pytest.mark.parametrize("bits", [8, 16, 32])
def test_byte_aligned_uniform_payload_is_little_endian_levels(bits):
    x = torch.tensor([0.0, 1.0, 2.0, 2 ** bits - 1.0], dtype=torch.float64)
    payload, quant = quantize(x, QuantSpec("uniform", bits))
    assert quant.scale == 1.0 and quant.offset == 0.0
    levels = np.array([0, 1, 2, 2 ** bits - 1], dtype=f"<u{bits // 8}")
    assert bytes(payload) == levels.tobytes()


def test_bit_order_is_little_endian():
    # 3-bit levels 1, 2, 3 -> stream bits (LSB first) 100 010 110 -> 0xD1, 0x00.
    assert pack_levels(np.array([1, 2, 3]), 3).tolist() == [0xD1, 0x00]
    # 12-bit 0xABC, 0x123 -> 0x123ABC little-endian.
    assert pack_levels(np.array([0xABC, 0x123]), 12).tobytes() == b"\xbc\x3a\x12"


# ---------------------------------------------------------------- packing

@SETTINGS
@given(st.integers(1, 32), st.integers(0, 300), st.randoms(use_true_random=False))
def test_pack_unpack_round_trip_and_size(bits, n, rnd):
    levels = np.array([rnd.getrandbits(bits) for _ in range(n)], dtype=np.uint64)
    packed = pack_levels(levels, bits)
    assert packed.dtype == np.uint8 and packed.size == math.ceil(n * bits / 8)
    assert packed.size == packed_nbytes(n, bits)
    assert unpack_levels(packed, bits, n).astype(np.uint64).tolist() == levels.tolist()


@SETTINGS
@given(hnp.arrays(np.float32, shapes, elements=finite32), st.integers(1, 32))
def test_uniform_payload_is_ceil_n_bits_over_8(arr, bits):
    payload, _ = quantize(torch.from_numpy(arr), QuantSpec("uniform", bits))
    assert len(payload) == math.ceil(arr.size * bits / 8)


@pytest.mark.parametrize("bits", [3, 13, 31])
def test_pack_across_block_boundaries(bits):
    n = 2 * qmod._BLOCK + 13  # odd tail, blocks not byte-multiples of levels
    rng = np.random.default_rng(bits)
    levels = rng.integers(0, 2 ** bits, n, dtype=np.uint64)
    packed = pack_levels(levels, bits)
    assert packed.size == packed_nbytes(n, bits)
    assert np.array_equal(unpack_levels(packed, bits, n).astype(np.uint64), levels)


def test_unpack_rejects_wrong_size():
    with pytest.raises(CodecError, match="has 2 bytes but 10 levels at 3 bits need 4"):
        unpack_levels(np.zeros(2, np.uint8), 3, 10)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("scheme, bits", [("float16", 0), ("int8", 0), ("uniform", 5)])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input_is_a_codec_error(scheme, bits, bad):
    x = torch.tensor([0.0, bad, 1.0])
    with pytest.raises(CodecError, match="NaN or infinity") as info:
        quantize(x, QuantSpec(scheme, bits))
    assert isinstance(info.value, (ValueError, TransferError))


def test_lossy_scheme_needs_floats():
    with pytest.raises(CodecError, match="floating-point tensor, got int64"):
        quantize(torch.arange(4), QuantSpec("int8"))


def test_float16_overflow_is_rejected():
    with pytest.raises(CodecError, match="65504"):
        quantize(torch.tensor([1e6]), QuantSpec("float16"))


def test_range_overflowing_float64_is_rejected():
    x = torch.tensor([-1e308, 1e308], dtype=torch.float64)
    with pytest.raises(CodecError, match="overflows float64"):
        quantize(x, QuantSpec("uniform", 4))


def test_input_tensor_is_not_modified():
    x = torch.linspace(-3, 3, 101, dtype=torch.float64)
    before = x.clone()
    for spec in (QuantSpec("int8"), QuantSpec("uniform", 5), QuantSpec("float16")):
        quantize(x, spec)
    assert torch.equal(x, before)


def test_zero_element_and_zero_dim():
    for spec in (QuantSpec("int8"), QuantSpec("uniform", 7), QuantSpec("float16")):
        y, _ = round_trip(torch.zeros(0, 4), spec)
        assert y.shape == (0, 4)
        y, _ = round_trip(torch.tensor(2.5), spec)
        assert y.shape == () and abs(float(y) - 2.5) < 0.01


@pytest.mark.parametrize("quant, wire, needle", [
    (pb.Quantization(scheme="int4", source_dtype="float32"), "int8", "'int4'"),
    (pb.Quantization(scheme="uniform", bits=40, source_dtype="float32"), "uint8", "got 40"),
    (pb.Quantization(scheme="uniform", bits=4, source_dtype="int32"), "uint8", "'int32'"),
    (pb.Quantization(scheme="int8", scale=float("nan"), source_dtype="float32"), "int8", "nan"),
    (pb.Quantization(scheme="int8", scale=-1.0, source_dtype="float32"), "int8", "-1.0"),
    (pb.Quantization(scheme="int8", source_dtype="float32"), "float32", "'int8'"),
    (pb.Quantization(scheme="none", source_dtype="float64"), "float32", "'float64'"),
    (pb.Quantization(bits=3, source_dtype="float32"), "float32", "quant.scheme is empty"),
])
def test_check_quantization_names_the_problem(quant, wire, needle):
    with pytest.raises(CodecError, match=needle) as info:
        check_quantization(quant, wire, "w")
    assert "tensor 'w'" in str(info.value)
