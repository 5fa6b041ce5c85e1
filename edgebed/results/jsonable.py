"""Plain JSON out of whatever a run records: dataclasses, numpy, paths, enums."""
from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Optional


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return str(key)
    item = getattr(key, "item", None)  # numpy scalar keys
    return str(item() if callable(item) else key)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def to_jsonable(value: Any, strict: bool = False, path: str = "") -> Any:
    """Convert ``value`` to plain JSON types (dict, list, str, int, float, bool, None).

    Dataclasses, ``argparse.Namespace`` and mappings become dicts; tuples and
    sets become lists; numpy scalars and arrays (anything with ``tolist``)
    become Python numbers and lists; paths become strings; enums their value.

    ``strict=False`` (config, events): NaN/inf become ``None`` and unknown
    objects become ``str(obj)``. ``strict=True`` (summaries): NaN/inf raise
    ``ValueError`` and unknown objects ``TypeError``, both naming the key.
    """
    where = path or "<root>"
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        if strict:
            raise ValueError(f"{where} is {value!r}; NaN/inf is not allowed here")
        return None
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value, strict, path)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    elif isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            name = _json_key(key)
            out[name] = to_jsonable(item, strict, _join(path, name))
        return out
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item, strict, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        items = [to_jsonable(item, strict, f"{path}[{i}]") for i, item in enumerate(value)]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    tolist = getattr(value, "tolist", None)  # numpy scalars/arrays, torch tensors
    if callable(tolist):
        return to_jsonable(tolist(), strict, path)
    if strict:
        raise TypeError(f"{where} is a {type(value).__name__}, which is not JSON-serializable")
    return str(value)


def write_json_atomic(path: Path, data: Any, mode: Optional[int] = None) -> None:
    """``data`` as indented JSON (NaN refused), written to a temporary file
    beside ``path`` and renamed over it: a reader sees the old file or the
    new one, never half of one. ``mode`` (e.g. ``0o600`` for secrets): the
    file's permissions from the start, never wider for a moment."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if mode is None:
        fh = open(tmp, "w", encoding="utf-8")  # noqa: SIM115 - closed by the with below
    else:
        fh = open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w",
                  encoding="utf-8")
        os.chmod(tmp, mode)  # a temporary file left by a crash keeps its old mode otherwise
    with fh:
        json.dump(data, fh, indent=2, allow_nan=False)
        fh.write("\n")
    os.replace(tmp, path)


def read_json(path: Path, default: Any) -> Any:
    """``path``'s JSON, or ``default`` when there is no such file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return default
    return json.loads(text)
