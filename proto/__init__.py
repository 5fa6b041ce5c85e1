"""Wire contract and everything that moves tensors: generated stubs, record
dataclasses with to_proto/from_proto, the tensor codec, chunking,
quantization, rate shaping and the wireless link model."""
