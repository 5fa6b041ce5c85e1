"""The committed gRPC stubs are exactly what the pinned generator makes."""
import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load_generator():
    spec = importlib.util.spec_from_file_location("generate", ROOT / "proto" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_match_the_proto(tmp_path):
    pytest.importorskip("grpc_tools")
    generate = _load_generator()
    generate.generate(tmp_path)
    for name in generate.OUTPUTS:
        fresh = (tmp_path / name).read_text()
        committed = (ROOT / "proto" / name).read_text()
        assert fresh == committed, f"proto/{name} is stale: run python proto/generate.py"


def test_stubs_declare_protobuf5_gencode():
    # Python 3.8 (Jetson Nano) cannot install protobuf 6+, so the gencode
    # must not demand a newer runtime than 5.x.
    text = (ROOT / "proto" / "edge_pb2.py").read_text()
    lines = [ln.strip().rstrip(",") for ln in text.splitlines()]
    at = lines.index("_runtime_version.Domain.PUBLIC")
    assert lines[at + 1] == "5", f"gencode major version is {lines[at + 1]}"
