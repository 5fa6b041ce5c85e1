"""Regenerate the committed gRPC stubs from ``edge.proto`` and ``control.proto``.

One pinned generator (``grpcio-tools`` == GENERATOR_VERSION, which bundles
protoc for protobuf 5.27) so the stubs load with the protobuf 5.x runtime
that Python 3.8 can still install on a Jetson Nano.

Usage: ``python proto/generate.py [--out DIR]``. ``tests/test_stubs.py``
regenerates into a temporary folder and fails on any difference.
"""
import argparse
import pathlib
import shutil
import sys
import tempfile

GENERATOR_VERSION = "1.66.2"
HERE = pathlib.Path(__file__).resolve().parent
PROTOS = ("edge", "control")
OUTPUTS = tuple(f"{name}{suffix}" for name in PROTOS
                for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"))


def generate(out_dir: pathlib.Path) -> None:
    try:
        from importlib.metadata import version

        from grpc_tools import protoc
    except ImportError as exc:  # pragma: no cover - dev extra missing
        raise SystemExit("grpcio-tools is missing: pip install -e '.[dev]'") from exc
    found = version("grpcio-tools")
    if found != GENERATOR_VERSION:
        raise SystemExit(
            f"grpcio-tools {found} installed, stubs are pinned to {GENERATOR_VERSION}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        # Lay the protos out under edgebed/proto/ so generated imports read
        # ``from edgebed.proto import edge_pb2`` rather than a bare top-level name.
        src_root = pathlib.Path(tmp, "src")
        pkg = src_root / "edgebed" / "proto"
        pkg.mkdir(parents=True)
        for name in PROTOS:
            shutil.copy(HERE / f"{name}.proto", pkg / f"{name}.proto")
        gen = pathlib.Path(tmp, "gen")
        gen.mkdir()
        include = pathlib.Path(protoc.__file__).parent / "_proto"
        rc = protoc.main([
            "protoc",
            f"-I{src_root}",
            f"-I{include}",
            f"--python_out={gen}",
            f"--pyi_out={gen}",
            f"--grpc_python_out={gen}",
            *(f"edgebed/proto/{name}.proto" for name in PROTOS),
        ])
        if rc != 0:
            raise SystemExit(f"protoc failed with exit code {rc}")
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in OUTPUTS:
            shutil.copy(gen / "edgebed" / "proto" / name, out_dir / name)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=HERE)
    args = parser.parse_args(argv)
    generate(args.out)
    print(f"stubs written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
