"""Tensor codec: round trips, frame layout and every malformed-stream fault."""
import math
import os
import random
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgebed.proto import codec
from edgebed.proto import edge_pb2 as pb
from edgebed.proto.codec import (
    MAX_CHUNK_BYTES,
    SUPPORTED_DTYPES,
    TENSOR_OVERHEAD_BYTES,
    FrameAssembler,
    decode_transfer,
    encode_tensor,
    encode_transfer,
    iter_frames,
)
from edgebed.proto.errors import CodecError, TransferError, TransferTooLarge
from edgebed.proto.quantize import QuantSpec

SETTINGS = settings(max_examples=60, deadline=None)
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=7)


def make_tensor(dtype_name: str, shape, seed: int) -> torch.Tensor:
    """Arbitrary bit patterns (NaN, inf, subnormals included) for floats."""
    rng = np.random.default_rng(seed)
    wire = SUPPORTED_DTYPES[dtype_name]
    n = int(np.prod(shape, dtype=np.int64))
    if dtype_name == "bool":
        return torch.from_numpy(rng.integers(0, 2, n).astype(bool)).reshape(shape)
    raw = rng.integers(0, 256, n * wire.itemsize, dtype=np.uint8)
    t = torch.from_numpy(raw.view(wire.numpy_dtype).astype(wire.numpy_dtype.newbyteorder("=")))
    return t.view(wire.torch_dtype).reshape(shape)


def bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-exact equality (NaN payloads included)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    view = {torch.float32: torch.int32, torch.float64: torch.int64,
            torch.float16: torch.int16, torch.bfloat16: torch.int16}.get(a.dtype)
    if view is not None:
        a, b = a.contiguous().view(view), b.contiguous().view(view)
    return torch.equal(a, b)


def frames_of(tensors, **kw):
    kw.setdefault("device_id", "dev-1")
    kw.setdefault("key", "k")
    return list(encode_transfer(tensors, **kw))


def feed_all(frames, max_bytes=0):
    asm = FrameAssembler(max_bytes)
    for frame in frames:
        asm.feed(frame)
    return asm.finish()


# ---------------------------------------------------------------- round trips

@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(sorted(SUPPORTED_DTYPES)), shapes), max_size=4),
       st.one_of(st.integers(1, 64), st.just(MAX_CHUNK_BYTES)), st.integers(0, 2 ** 32))
def test_round_trip_is_bit_exact(specs, chunk, seed):
    tensors = {f"t{i}": make_tensor(d, s, seed + i) for i, (d, s) in enumerate(specs)}
    frames = frames_of(tensors, chunk_bytes=chunk, rate_bps=1e6, meta={"round": "3"})
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert all(len(f.data) <= chunk for f in frames)
    got = decode_transfer(frames)
    assert (got.device_id, got.key, got.rate_bps, got.meta) == ("dev-1", "k", 1e6, {"round": "3"})
    assert list(got.tensors) == list(tensors)
    for name, t in tensors.items():
        assert bits_equal(got.tensors[name], t), name
    assert got.payload_bytes == sum(t.numel() * t.element_size() for t in tensors.values())
    assert got.num_frames == len(frames)


@SETTINGS
@given(hnp.arrays(np.float32, shapes, elements=st.floats(-1e6, 1e6, width=32)),
       st.integers(1, 32), st.integers(1, 40))
def test_uniform_quantized_transfer(arr, bits, chunk):
    x = torch.from_numpy(arr)
    frames = frames_of({"x": x, "i": torch.arange(3)}, quant=QuantSpec("uniform", bits),
                       chunk_bytes=chunk)
    header = frames[0].tensor
    assert header.dtype == "uint8" and header.quant.bits == bits
    assert header.payload_bytes == math.ceil(x.numel() * bits / 8)
    got = decode_transfer(frames).tensors
    assert torch.equal(got["i"], torch.arange(3))  # integer tensors go raw
    assert got["x"].dtype == torch.float32 and got["x"].shape == x.shape
    err = (got["x"].double() - x.double()).abs()
    peak = torch.maximum(x.double().abs(), got["x"].double().abs())
    slack = 2.0 ** -24 * peak + 2.0 ** (bits - 50) * header.quant.scale
    assert bool((err <= header.quant.scale / 2 + slack).all())


@pytest.mark.parametrize("spec, wire", [(QuantSpec("float16"), "float16"),
                                        (QuantSpec("int8"), "int8")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_cast_quantized_transfer(spec, wire, dtype):
    x = torch.linspace(-4, 4, 999).to(dtype).reshape(9, 111)
    frames = frames_of({"x": x}, quant=spec, chunk_bytes=100)
    assert frames[0].tensor.dtype == wire
    y = decode_transfer(frames).tensors["x"]
    assert y.dtype == dtype and y.shape == x.shape
    assert float((y.double() - x.double()).abs().max()) <= 4 / 127 / 2 + 0.02


def test_per_name_quant_mapping():
    frames = frames_of({"a": torch.ones(4), "b": torch.ones(4)},
                       quant={"b": QuantSpec("uniform", 2)})
    headers = [f.tensor for f in frames if f.HasField("tensor")]
    assert [h.dtype for h in headers] == ["float32", "uint8"]


def test_sequence_of_pairs_keeps_order():
    pairs = [("z", torch.ones(1)), ("a", torch.zeros(2))]
    assert list(decode_transfer(frames_of(pairs)).tensors) == ["z", "a"]


def test_decoded_tensors_are_writable_and_own_their_memory():
    x = torch.arange(10, dtype=torch.float32)
    y = decode_transfer(frames_of({"x": x})).tensors["x"]
    y.add_(1)  # would raise on a read-only buffer
    assert torch.equal(x, torch.arange(10, dtype=torch.float32))
    assert y.numpy().flags.writeable


def test_non_contiguous_grad_and_zero_dim_inputs():
    base = torch.arange(12.0).reshape(3, 4)
    tensors = {"t": base.t(), "g": torch.ones(3, requires_grad=True), "s": torch.tensor(7),
               "e": torch.empty(0, 5, dtype=torch.int16), "h": base[:, ::2]}
    got = decode_transfer(frames_of(tensors, chunk_bytes=5)).tensors
    for name, t in tensors.items():
        assert torch.equal(got[name], t.detach()), name
    assert got["s"].shape == () and got["e"].shape == (0, 5)


def test_payload_is_little_endian():
    assert bytes(encode_tensor("i", torch.tensor([1], dtype=torch.int32)).payload) == b"\1\0\0\0"
    bf = encode_tensor("b", torch.tensor([1.0], dtype=torch.bfloat16))
    assert bytes(bf.payload) == b"\x80\x3f" and bf.header.dtype == "bfloat16"
    assert encode_tensor("f", torch.tensor([1.0])).header.crc32 == zlib.crc32(b"\0\0\x80\x3f")


# ---------------------------------------------------------------- frame layout

def test_frame_layout():
    tensors = {"a": torch.zeros(10, dtype=torch.uint8), "empty": torch.zeros(0),
               "b": torch.ones(3, dtype=torch.uint8)}
    frames = frames_of(tensors, chunk_bytes=4, rate_bps=5e5, meta={"m": "1"})
    assert frames[0].HasField("transfer")
    assert not any(f.HasField("transfer") for f in frames[1:])
    th = frames[0].transfer
    assert (th.num_tensors, th.total_bytes, th.rate_bps, dict(th.meta)) == (3, 13, 5e5, {"m": "1"})
    layout = [(f.tensor.name if f.HasField("tensor") else None, len(f.data)) for f in frames]
    assert layout == [("a", 4), (None, 4), (None, 2), ("empty", 0), ("b", 3)]
    assert frames[0].tensor.crc32 == zlib.crc32(bytes(10))


def test_frame_parts_match_frames_and_assemble_from_views():
    tensors = {"a": torch.arange(7, dtype=torch.int16), "e": torch.zeros(0)}
    parts = list(codec.iter_frame_parts([encode_tensor(k, v) for k, v in tensors.items()],
                                        device_id="d", key="k", chunk_bytes=4))
    frames = frames_of(tensors, device_id="d", key="k", chunk_bytes=4)
    assert len(parts) == len(frames)
    views = []
    for (head, data), full in zip(parts, frames):
        assert isinstance(data, memoryview) and not head.data
        head.data = bytes(data)
        assert head == full
        # What a zero-copy receiver feeds: header fields plus a data view.
        views.append(SimpleNamespace(seq=full.seq, data=memoryview(full.data),
                                     transfer=full.transfer, tensor=full.tensor,
                                     HasField=full.HasField))
    got = feed_all(views).tensors
    assert torch.equal(got["a"], tensors["a"]) and got["e"].shape == (0,)


def test_empty_transfer_is_one_frame():
    frames = frames_of({})
    assert len(frames) == 1 and frames[0].transfer.num_tensors == 0
    got = decode_transfer(frames)
    assert got.tensors == {} and got.payload_bytes == 0


def test_big_tensor_uses_full_chunks():
    frames = frames_of({"w": torch.zeros(MAX_CHUNK_BYTES // 2 + 1, dtype=torch.int16)})
    assert [len(f.data) for f in frames] == [MAX_CHUNK_BYTES, 2]


@pytest.mark.parametrize("chunk", [0, -1, MAX_CHUNK_BYTES + 1])
def test_chunk_bytes_out_of_range(chunk):
    with pytest.raises(ValueError, match=str(chunk)):
        iter_frames([], device_id="d", key="k", chunk_bytes=chunk)


def test_iter_frames_rejects_duplicates_and_bad_rate():
    enc = encode_tensor("x", torch.ones(1))
    with pytest.raises(ValueError, match="duplicate tensor names.*'x'"):
        iter_frames([enc, enc], device_id="d", key="k")
    with pytest.raises(ValueError, match="rate_bps"):
        iter_frames([enc], device_id="d", key="k", rate_bps=-5)
    with pytest.raises(TypeError, match="chunk_bytes"):
        iter_frames([enc], device_id="d", key="k", chunk_bytes=1.5)


def test_lossy_spec_leaves_integer_tensors_raw():
    enc = encode_tensor("n", torch.tensor(7), QuantSpec("uniform", 2))
    assert enc.header.dtype == "int64" and not enc.header.HasField("quant")


def test_unsupported_input_dtype():
    with pytest.raises(CodecError, match="complex64"):
        encode_tensor("c", torch.ones(2, dtype=torch.complex64))


def test_feed_reports_completion_for_back_to_back_transfers():
    stream = frames_of({"a": torch.ones(3)}, chunk_bytes=4) + frames_of({"b": torch.zeros(2)})
    results, asm = [], FrameAssembler()
    for frame in stream:
        if asm.feed(frame):
            results.append(asm.finish())
            asm = FrameAssembler()
    assert [list(r.tensors) for r in results] == [["a"], ["b"]]


# ---------------------------------------------------------------- crc32

@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_crc32_combine_matches_zlib(a, b):
    assert codec.crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def test_parallel_crc32_matches_zlib():
    data = os.urandom(codec._CRC_PARALLEL_MIN + 12345)
    assert codec.crc32(data) == zlib.crc32(data)
    assert codec.crc32(memoryview(np.frombuffer(data[:-1], np.uint8))) == zlib.crc32(data[:-1])


# ---------------------------------------------------------------- faults

def two_tensor_frames():
    return frames_of({"w": torch.arange(8, dtype=torch.float32),
                      "b": torch.arange(3, dtype=torch.int64)}, chunk_bytes=8)


def assert_fault(frames, exc, *needles, max_bytes=0):
    with pytest.raises(exc) as info:
        feed_all(frames, max_bytes)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))
    return info.value


def test_error_types():
    assert issubclass(CodecError, TransferError) and issubclass(CodecError, ValueError)
    assert issubclass(TransferTooLarge, TransferError)
    assert not issubclass(TransferTooLarge, ValueError)


def test_payload_bytes_disagree_with_dtype_and_shape():
    frames = frames_of({"x": torch.zeros(2, 2)})
    frames[0].tensor.payload_bytes = 12
    assert_fault(frames, CodecError, "tensor 'x': payload has 12 bytes but float32 shape (2, 2) "
                                     "needs 16")


def test_shape_disagrees_with_uniform_payload():
    frames = frames_of({"q": torch.rand(10)}, quant=QuantSpec("uniform", 3))
    del frames[0].tensor.shape[:]
    frames[0].tensor.shape.extend([11])
    assert_fault(frames, CodecError, "tensor 'q'", "3-bit uniform", "(11,)", "needs 5")


def test_bad_crc32_in_header():
    frames = two_tensor_frames()
    good = frames[0].tensor.crc32
    frames[0].tensor.crc32 = good ^ 1
    assert_fault(frames, CodecError, f"tensor 'w': crc32 mismatch: header 0x{good ^ 1:08x}, "
                                     f"computed 0x{good:08x}")


def test_corrupted_data_fails_crc32():
    frames = two_tensor_frames()
    data = bytearray(frames[-1].data)
    data[0] ^= 0xFF
    frames[-1].data = bytes(data)
    assert_fault(frames, CodecError, "tensor 'b': crc32 mismatch")


def test_unknown_dtype():
    frames = two_tensor_frames()
    frames[0].tensor.dtype = "complex32"
    assert_fault(frames, CodecError, "tensor 'w': unknown dtype 'complex32'")


def test_out_of_order():
    frames = two_tensor_frames()
    assert_fault(frames[:1] + frames[2:], CodecError,
                 "chunks out of order: expected seq 1, got 2")
    swapped = frames[:]
    swapped[1], swapped[2] = swapped[2], swapped[1]
    assert_fault(swapped, CodecError, "expected seq 1, got 2")
    assert_fault(frames[1:], CodecError, "expected seq 0, got 1")


def test_missing_transfer_header():
    frames = two_tensor_frames()
    frames[0].ClearField("transfer")
    assert_fault(frames, CodecError, "frame 0 carries no transfer header")


def test_repeated_transfer_header():
    frames = two_tensor_frames()
    frames[1].transfer.CopyFrom(frames[0].transfer)
    assert_fault(frames, CodecError, "frame 1 repeats the transfer header")


def test_missing_tensor_header():
    frames = two_tensor_frames()  # w: 4 frames of 8 bytes, then b: 3 frames
    assert frames[4].tensor.name == "b"
    frames[4].ClearField("tensor")
    assert_fault(frames, CodecError, "frame 4 carries 8 data bytes but no tensor header",
                 "after tensor 'w' is complete")
    first = two_tensor_frames()
    first[0].ClearField("tensor")
    assert_fault(first, CodecError, "frame 0 carries 8 data bytes but no tensor header")


def test_tensor_header_before_previous_complete():
    frames = two_tensor_frames()
    frames[2].tensor.CopyFrom(frames[4].tensor)
    assert_fault(frames, CodecError, "tensor 'b' starts in frame 2 before tensor 'w' is "
                                     "complete (16 of 32 bytes)")


def test_data_beyond_announced_payload():
    frames = two_tensor_frames()
    frames[3].data = frames[3].data + b"\0"
    assert_fault(frames, CodecError, "tensor 'w'", "beyond the announced payload_bytes 32")


def test_too_many_tensors():
    frames = two_tensor_frames()
    frames[0].transfer.num_tensors = 1
    frames[0].transfer.total_bytes = 32
    assert_fault(frames, CodecError, "too many tensors: transfer announced 1", "'b'")


def test_too_few_tensors():
    frames = two_tensor_frames()
    frames[0].transfer.num_tensors = 3
    assert_fault(frames, CodecError, "too few tensors: transfer announced 3, received 2")


def test_truncated_stream():
    assert_fault(two_tensor_frames()[:-1], CodecError, "tensor 'b' incomplete: received 16 of 24")


def test_total_bytes_lies():
    frames = two_tensor_frames()
    frames[0].transfer.total_bytes = 100
    assert_fault(frames, CodecError, "announced total_bytes 100 but its tensors carry 56")
    frames[0].transfer.total_bytes = 40
    assert_fault(frames, CodecError, "tensor 'b' brings the transfer to 56 payload bytes",
                 "40 total_bytes")


def test_over_cap_up_front():
    frames = two_tensor_frames()
    asm = FrameAssembler(max_bytes=55)
    with pytest.raises(TransferTooLarge, match="announces 56 payload bytes, over the cap of 55"):
        asm.feed(frames[0])
    # Holding the two tensors costs their payload plus names, keys and a fixed overhead each.
    roomy = 56 + 2 * TENSOR_OVERHEAD_BYTES + 256
    assert feed_all(frames, max_bytes=roomy).payload_bytes == 56
    with pytest.raises(TransferTooLarge, match="payload, decoded tensors and metadata"):
        feed_all(frames, max_bytes=56 + TENSOR_OVERHEAD_BYTES)


def test_the_cap_counts_what_a_quantized_tensor_decodes_to():
    """1-bit levels of a float64 tensor decode to 64 times their wire size: the
    decoded size counts against the cap, before anything is allocated."""
    x = torch.randn(8192, dtype=torch.float64)
    frames = list(encode_transfer({"x": x}, device_id="d", key="k",
                                  quant=QuantSpec("uniform", 1)))
    wire = 8192 // 8
    asm = FrameAssembler(max_bytes=wire + TENSOR_OVERHEAD_BYTES + 4096)  # the wire size fits
    with pytest.raises(TransferTooLarge, match="decodes to"):
        for frame in frames:
            asm.feed(frame)


def test_names_and_meta_are_bounded():
    big = list(encode_transfer({"x": torch.zeros(0)}, device_id="d", key="k",
                               meta={"m": "v" * 5000}))
    with pytest.raises(TransferTooLarge, match="over 1024 characters"):
        FrameAssembler().feed(big[0])
    frames = list(encode_transfer({"n" * 300: torch.zeros(0)}, device_id="d", key="k"))
    with pytest.raises(TransferTooLarge, match="a tensor name of 300 characters"):
        for frame in frames:
            FrameAssembler().feed(frame)


def test_over_cap_by_running_count():
    # The header under-announces; the cap still holds, before any allocation.
    frames = two_tensor_frames()
    frames[0].transfer.total_bytes = 8
    assert_fault(frames, TransferTooLarge, "tensor 'w' brings the transfer to 32 payload bytes",
                 "over the cap of 16", max_bytes=16)


def test_huge_announced_tensor_is_refused_before_allocation():
    frames = frames_of({"x": torch.ones(2)})
    frames[0].transfer.total_bytes = 8
    del frames[0].tensor.shape[:]
    frames[0].tensor.shape.extend([1 << 40])
    frames[0].tensor.payload_bytes = 4 << 40
    assert_fault(frames, TransferTooLarge, "over the cap", max_bytes=1 << 20)
    assert_fault(frames, CodecError, "more than the 8 total_bytes")


def test_duplicate_names_and_negative_dims():
    frames = frames_of([("a", torch.ones(1)), ("b", torch.ones(1))])
    frames[1].tensor.name = "a"
    assert_fault(frames, CodecError, "tensor 'a' appears twice")
    neg = frames_of({"n": torch.ones(0)})
    neg[0].tensor.shape[0] = -1
    assert_fault(neg, CodecError, "tensor 'n': negative dimension in shape (-1,)")


def test_bool_payload_must_be_zero_or_one():
    frames = frames_of({"m": torch.tensor([True, False, True])})
    frames[0].data = b"\1\2\1"
    frames[0].tensor.crc32 = zlib.crc32(b"\1\2\1")
    assert_fault(frames, CodecError, "tensor 'm': bool payload")


def test_bad_quantization_header():
    frames = frames_of({"q": torch.rand(9)}, quant=QuantSpec("uniform", 4))
    frames[0].tensor.quant.bits = 40
    assert_fault(frames, CodecError, "tensor 'q'", "bits in 1..32, got 40")
    frames = frames_of({"q": torch.rand(9)})
    frames[0].tensor.quant.bits = 3  # a quant header that names no scheme
    assert_fault(frames, CodecError, "tensor 'q'", "quant.scheme is empty")


def test_assembler_is_single_use():
    frames = two_tensor_frames()
    asm = FrameAssembler()
    with pytest.raises(CodecError, match="no frames received"):
        asm.finish()
    asm = FrameAssembler()
    with pytest.raises(CodecError):
        asm.feed(frames[1])
    with pytest.raises(CodecError, match="already failed"):
        asm.feed(frames[0])
    asm = FrameAssembler()
    for frame in frames:
        asm.feed(frame)
    asm.finish()
    with pytest.raises(CodecError, match="already finished"):
        asm.finish()


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_max_bytes_validation(bad):
    with pytest.raises((ValueError, TypeError)):
        FrameAssembler(bad)


def test_random_single_byte_corruption_never_passes_silently():
    rng = random.Random(7)
    clean = frames_of({"w": torch.randn(50), "i": torch.arange(20)}, chunk_bytes=64)
    for _ in range(50):
        frames = [pb.TransferFrame.FromString(f.SerializeToString()) for f in clean]
        victim = rng.choice([f for f in frames if f.data])
        data = bytearray(victim.data)
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        victim.data = bytes(data)
        with pytest.raises(CodecError, match="crc32 mismatch"):
            feed_all(frames)
