"""Typed commands: the records both ends import, and their strict JSON form.

Commands cross the Session stream as a kind and a JSON object
(``records.Command``). A workload's contract module declares each command
once, as a :class:`CommandSpec` naming its request and result records
(frozen dataclasses). Defaults are written once, in the record's fields.
:func:`from_args` is strict: an unknown key, a missing key without a
default, or a value of the wrong type raises :class:`ContractError` naming
the key and the command, so a misspelt argument can never fall back to a
guess. Flower's ``typing.py`` / ``serde.py`` pairs are the model.

Supported field types: ``int``, ``float``, ``str``, ``bool``, ``Any``,
``Optional[T]``, ``List[T]``, ``Tuple[T, ...]``, ``Dict[str, T]`` and nested
dataclasses. Device-safe: Python 3.8, standard library only.
"""
import dataclasses
import functools
import typing
from typing import Any, Dict, Generic, Mapping, Tuple, Type, TypeVar

from edgebed import EdgebedError

__all__ = ["CommandSpec", "ContractError", "MetaRecord", "PARTITIONS", "PhaseSummary", "Record",
           "RunKeys", "check_partition", "check_share", "from_args", "to_args"]

#: How a data set is shared among devices (``edgebed.models.partition``).
PARTITIONS = ("iid", "noniid")

T = TypeVar("T")
Req = TypeVar("Req")
Res = TypeVar("Res")


class ContractError(EdgebedError, ValueError):
    """Arguments or results that do not match a command's contract."""


# ---------------------------------------------------------------- records <-> JSON

def to_args(record: Any) -> Any:
    """A record (or a value inside one) as plain JSON types."""
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return {f.name: to_args(getattr(record, f.name)) for f in dataclasses.fields(record)}
    if isinstance(record, (list, tuple)):
        return [to_args(v) for v in record]
    if isinstance(record, Mapping):
        return {str(k): to_args(v) for k, v in record.items()}
    return record


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp: Any, value: Any, where: str) -> Any:
    """``value`` checked against the annotation ``tp``; ContractError names ``where``."""
    origin = typing.get_origin(tp)
    params = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Union:
        if value is None and type(None) in params:
            return None
        options = [p for p in params if p is not type(None)]
        if len(options) == 1:
            return _convert(options[0], value, where)
        for option in options:  # first that fits
            try:
                return _convert(option, value, where)
            except ContractError:
                continue
        raise ContractError(f"{where} must be one of {', '.join(map(_type_name, options))}, "
                            f"got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ContractError(f"{where} must be an object ({tp.__name__}), got {value!r}")
        return from_args(tp, value, where)
    if origin in (list, typing.List):
        if not isinstance(value, (list, tuple)):
            raise ContractError(f"{where} must be a list, got {value!r}")
        return [_convert(params[0] if params else Any, v, f"{where}[{i}]")
                for i, v in enumerate(value)]
    if origin in (tuple, typing.Tuple):
        if not isinstance(value, (list, tuple)):
            raise ContractError(f"{where} must be a list, got {value!r}")
        if len(params) == 2 and params[1] is Ellipsis:
            return tuple(_convert(params[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if params and len(params) != len(value):
            raise ContractError(f"{where} must have {len(params)} items, got {len(value)}")
        return tuple(_convert(p, v, f"{where}[{i}]") for i, (p, v) in enumerate(zip(params, value)))
    if origin in (dict, typing.Dict):
        if not isinstance(value, Mapping):
            raise ContractError(f"{where} must be an object, got {value!r}")
        inner = params[1] if params else Any
        return {str(k): _convert(inner, v, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ContractError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ContractError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ContractError(f"{where} must be a number, got {value!r}")
        try:
            return float(value)
        except OverflowError:  # an integer of hundreds of digits
            raise ContractError(f"{where} must be a number a float holds, got an integer of "
                                f"{len(str(abs(value)))} digits") from None
    if tp is str:
        if not isinstance(value, str):
            raise ContractError(f"{where} must be a string, got {value!r}")
        return value
    raise TypeError(f"{where}: unsupported field type {tp!r} in a contract record")


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> Dict[str, Any]:
    """A record class's field types, resolved once (every request and meta decodes with them)."""
    return typing.get_type_hints(cls)


def from_args(cls: Type[T], args: Mapping[str, Any], where: str = "") -> T:
    """The record ``cls`` from its JSON form; strict about keys and types."""
    where = where or cls.__name__
    if not isinstance(args, Mapping):
        raise ContractError(f"{where}: expected an object, got {type(args).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(args) - set(fields))
    if unknown:
        raise ContractError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} "
                            f"{', '.join(repr(k) for k in unknown)} (known: {', '.join(fields)})")
    required = [name for name, f in fields.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in args]
    if missing:
        raise ContractError(f"{where}: missing key{'s' if len(missing) > 1 else ''} "
                            f"{', '.join(repr(k) for k in missing)}")
    hints = _hints(cls)
    values = {name: _convert(hints[name], value, f"{where}.{name}") for name, value in args.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:  # a record's own __post_init__ checks
        raise ContractError(f"{where}: {exc}") from None


class Record:
    """Mixin for contract dataclasses: ``to_args()`` and strict ``from_args()``."""

    def to_args(self) -> Dict[str, Any]:
        return to_args(self)

    @classmethod
    def from_args(cls: Type[T], args: Mapping[str, Any], where: str = "") -> T:
        return from_args(cls, args, where)


class MetaRecord(Record):
    """A record that travels as a transfer's string meta (``Dict[str, str]``):
    ints, floats, strings and tuples of ints (comma-separated); None is left out."""

    def to_meta(self) -> Dict[str, str]:
        meta = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, (list, tuple)):
                meta[f.name] = ",".join(str(int(v)) for v in value)
            else:
                meta[f.name] = repr(value) if isinstance(value, float) else str(value)
        return meta

    @classmethod
    def from_meta(cls: Type[T], meta: Mapping[str, str], where: str = "",
                  ignore: Tuple[str, ...] = ()) -> T:
        """Strict like ``from_args``; ``ignore`` names keys another layer owns."""
        where = where or f"{cls.__name__} meta"
        hints = _hints(cls)
        args: Dict[str, Any] = {}
        for key, text in meta.items():
            if key in ignore:
                continue
            tp = hints.get(key)
            if tp is None:  # unknown: from_args names it
                args[key] = text
                continue
            args[key] = _parse_text(tp, text, f"{where} {key!r}")
        return from_args(cls, args, where)


def _parse_text(tp: Any, text: str, where: str) -> Any:
    options = [p for p in typing.get_args(tp) if p is not type(None)] \
        if typing.get_origin(tp) is typing.Union else [tp]
    tp = options[0]
    try:
        if tp is int:
            return int(text)
        if tp is float:
            return float(text)
        if typing.get_origin(tp) in (tuple, typing.Tuple):
            return tuple(int(v) for v in text.split(",")) if text else ()
    except ValueError:
        raise ContractError(f"{where} must be {_type_name(tp)}, got {text!r}") from None
    return text


# ---------------------------------------------------------------- commands

@dataclasses.dataclass(frozen=True)
class CommandSpec(Generic[Req, Res]):
    """One command: its kind on the wire, its request and result records."""

    kind: str
    request: Type[Req]
    result: Type[Res]

    def encode_request(self, request: Req) -> Dict[str, Any]:
        if not isinstance(request, self.request):
            raise TypeError(f"{self.kind} takes a {self.request.__name__}, "
                            f"got {type(request).__name__}")
        return to_args(request)

    def decode_request(self, args: Mapping[str, Any]) -> Req:
        return from_args(self.request, args, self.kind)

    def encode_result(self, result: Res) -> Dict[str, Any]:
        if not isinstance(result, self.result):
            raise TypeError(f"the {self.kind} handler must return a {self.result.__name__}, "
                            f"not {type(result).__name__}")
        return to_args(result)

    def decode_result(self, data: Mapping[str, Any]) -> Res:
        return from_args(self.result, data, f"{self.kind} result")


@dataclasses.dataclass(frozen=True)
class PhaseSummary(Record):
    """What a device reports of one measured phase (its span, in short)."""

    seconds: float
    energy_j: float
    provenance: str
    power_backend: str


# ---------------------------------------------------------------- keys

class RunKeys:
    """Keys of one run of one workload, all under ``<workload>/<run_id>/``.

    Every upload and offer of a run lives under its prefix, so a finished run
    forgets exactly its own tensors and two runs never collide.
    """

    workload = ""

    def __init__(self, run_id: str) -> None:
        if not run_id or any(c.isspace() for c in run_id):
            raise ValueError(f"a run id must be non-empty without spaces, got {run_id!r}")
        self.run_id = run_id

    @property
    def prefix(self) -> str:
        return f"{self.workload}/{self.run_id}/"

    def key(self, *parts: object) -> str:
        return self.prefix + "/".join(str(p) for p in parts)


def check_partition(partition: str) -> None:
    if partition not in PARTITIONS:
        raise ValueError(f"partition must be one of {PARTITIONS}, got {partition!r}")


def check_share(partition: str, index: int, num_devices: int) -> None:
    """Device ``index``'s share of a data set split ``partition`` ways among
    ``num_devices``, or ValueError naming what is wrong."""
    check_partition(partition)
    if not 0 <= index < num_devices:
        raise ValueError(f"index {index} is outside 0..{num_devices - 1}")
