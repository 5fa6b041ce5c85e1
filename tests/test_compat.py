"""Everything the device agent imports runs on Python 3.8 and torch 1.10.

Checked with tools, not by hope: vermin for the language and stdlib, and the
interpreter's own list of what the agent process really imports.
"""
import ast
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Folders whose modules an agent may import (device never imports server).
DEVICE_SIDE = ["device", "proto", "models", "edgebed"]
# torch APIs newer than 1.10 that must not appear in device-side code.
TORCH_AFTER_1_10 = ["torch.compile", "torch.func", "torch.set_default_device",
                    "scaled_dot_product_attention", "untyped_storage", "torch.frombuffer"]


def test_device_side_code_runs_on_python_3_8():
    vermin = shutil.which("vermin")
    if vermin is None:
        pytest.skip("vermin is not installed (pip install -e '.[dev]')")
    files = [str(p) for folder in DEVICE_SIDE for p in (ROOT / folder).rglob("*.py")]
    # Annotations under `from __future__ import annotations` stay strings and
    # are never evaluated by the agent, so builtin generics there are fine.
    proc = subprocess.run([vermin, "-t=3.8-", "--no-tips", "--violations", *files],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_device_side_code_avoids_torch_apis_newer_than_1_10():
    offenders = []
    for folder in DEVICE_SIDE:
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            offenders += [f"{path.relative_to(ROOT)}: {api}" for api in TORCH_AFTER_1_10
                          if api in text]
    assert not offenders


def test_the_agent_never_imports_the_server():
    code = ("import sys, edgebed.device.cli, edgebed.device.workloads; "
            "print(sorted(m for m in sys.modules if m.startswith('edgebed.server')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_device_modules_do_not_name_the_server_package():
    for path in (ROOT / "device").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.startswith("edgebed.server") for n in names), path
