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
# What an agent may import (device never imports server): whole folders, and
# the modules of the top-level package it reads (workload registry, argument types).
DEVICE_SIDE = ["device", "proto", "models", "edgebed/__init__.py", "edgebed/workloads.py",
               "edgebed/argtypes.py"]


def device_side_files():
    for entry in DEVICE_SIDE:
        path = ROOT / entry
        yield from [path] if path.is_file() else sorted(path.rglob("*.py"))
# torch APIs newer than 1.10 that must not appear in device-side code.
TORCH_AFTER_1_10 = ["torch.compile", "torch.func", "torch.set_default_device",
                    "scaled_dot_product_attention", "untyped_storage", "torch.frombuffer"]


def test_device_side_code_runs_on_python_3_8():
    vermin = shutil.which("vermin")
    if vermin is None:
        pytest.skip("vermin is not installed (pip install -e '.[dev]')")
    files = [str(p) for p in device_side_files()]
    # Annotations under `from __future__ import annotations` stay strings and
    # are never evaluated by the agent, so builtin generics there are fine.
    proc = subprocess.run([vermin, "-t=3.8-", "--no-tips", "--violations", *files],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_device_side_code_avoids_torch_apis_newer_than_1_10():
    offenders = []
    for path in device_side_files():
        text = path.read_text()
        offenders += [f"{path.relative_to(ROOT)}: {api}" for api in TORCH_AFTER_1_10
                      if api in text]
    assert not offenders


# Server-side code and the server extras' libraries an agent must never load.
NOT_ON_THE_AGENT = ("edgebed.server", "edgebed.benchmarks", "edgebed.testbed", "edgebed.results",
                    "scipy", "stable_baselines3", "gymnasium", "prometheus_client", "matplotlib")


def test_the_agent_never_imports_the_server():
    code = ("import sys, edgebed.device.cli, edgebed.device.workloads as w; w.default_handlers(); "
            f"print(sorted(m for m in sys.modules if m.startswith({NOT_ON_THE_AGENT!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_device_modules_do_not_name_the_server_package():
    for path in device_side_files():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.startswith("edgebed.server") for n in names), path
