"""A suite's options as one typed record, its presets as data.

A suite declares its settings once, as a frozen dataclass whose fields carry
their help and their checks (:func:`option`), and its quick and full
presets as instances of it::

    @dataclass(frozen=True)
    class Options:
        lam: int = option(4, "compression ratio lambda", check=positive)
        partition: str = option("noniid", "data partition", choices=("iid", "noniid"))
        cnn_epochs: int = option(15, "edge-CNN epochs", check=positive)

    PRESETS = Presets(quick=Options(cnn_epochs=4), full=Options())

:func:`add_options` gives every field a ``--flag`` (default: unset) and
:func:`resolve` fills the unset ones from ``--quick``'s preset or the full
one. The same record is what a standing server receives when a suite is
submitted to it (``to_args`` / ``from_args`` of the contracts). A bad value
is refused by argparse with one line naming the option (exit status 2); a
submitted record gets the same checks (``edgebed.argtypes.record_problems``,
which the server applies, since it may not import this module).
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Callable, Generic, Optional, Sequence, Type, TypeVar

from edgebed.argtypes import MAX_INT, MAX_SEED, Check, record_problems, value_problem

T = TypeVar("T")

# MAX_INT (edgebed.argtypes): no integer option counts beyond it unless its
# ``option(most=...)`` says so: a million draws, epochs, devices or layers is a
# typo, and runs of it take days or do not fit in memory (and C int32
# overflows a little further on). MAX_SEED: what every generator accepts.
__all__ = ["MAX_INT", "MAX_SEED", "MAX_THREADS", "MAX_IMAGE_SIDE", "Check", "Presets", "option",
           "add_options", "resolve", "record_problems", "positive", "non_negative", "fraction",
           "unit_interval", "at_least", "between"]

#: Threads or worker processes on one host.
MAX_THREADS = 256
#: An image's side in pixels (the papers use 224 and 256).
MAX_IMAGE_SIDE = 4096


def positive(value: Any) -> Optional[str]:
    return None if value > 0 else "must be positive"


def non_negative(value: Any) -> Optional[str]:
    return None if value >= 0 else "must not be negative"


def fraction(value: Any) -> Optional[str]:
    return None if 0 < value < 1 else "must be between 0 and 1 (exclusive)"


def unit_interval(value: Any) -> Optional[str]:
    return None if 0 <= value <= 1 else "must be between 0 and 1"


def at_least(low: float) -> Check:
    def check(value: Any) -> Optional[str]:
        return None if value >= low else f"must be at least {low:g}"
    return check


def between(low: float, high: float, *, above: bool = False) -> Check:
    """``low <= value <= high`` (``low < value`` with ``above``)."""
    def check(value: Any) -> Optional[str]:
        ok = (value > low if above else value >= low) and value <= high
        return None if ok else f"must be {'above' if above else 'at least'} {low:g} and at most {high:g}"
    return check


def option(default: Any, help: str = "", *, choices: Optional[Sequence[Any]] = None,
           check: Optional[Check] = None, metavar: Optional[str] = None,
           most: int = MAX_INT) -> Any:
    """A dataclass field that ``add_options`` turns into a command-line option.

    An integer option refuses values above ``most`` (:data:`MAX_INT`) whatever
    its ``check`` says."""
    metadata = {"help": help, "choices": choices, "check": check, "metavar": metavar,
                "most": most}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Presets(Generic[T]):
    quick: T
    full: T

    def pick(self, quick: bool) -> T:
        return self.quick if quick else self.full


def _base_type(tp: Any) -> Any:
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0]
    return tp


def _parser_for(name: str, tp: Any, check: Optional[Check], most: int = MAX_INT
                ) -> Callable[[str], Any]:
    base = _base_type(tp)
    origin = typing.get_origin(base)
    if origin in (list, tuple, typing.List, typing.Tuple):
        item = typing.get_args(base)[0] if typing.get_args(base) else str
        scalar = _parser_for(name, item, check, most)

        def parse_list(text: str) -> Any:
            values = [scalar(v.strip()) for v in text.split(",") if v.strip()]
            if not values:
                raise argparse.ArgumentTypeError("expected a comma-separated list")
            return tuple(values) if origin in (tuple, typing.Tuple) else values
        return parse_list

    def parse(text: str) -> Any:
        if base is int:
            try:
                value = int(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        elif base is float:
            try:
                value = float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        else:
            value = text
        # The checks a submitted run's options get too (argtypes.record_problems).
        problem = value_problem(value, check, most)
        if problem:
            raise argparse.ArgumentTypeError(f"{problem}, got {text!r}")
        return value
    return parse


def add_options(parser: argparse.ArgumentParser, cls: Type[Any], presets: Optional[Presets] = None,
                title: str = "suite options") -> None:
    """One ``--flag`` per field of ``cls``; unset flags take the preset's value.

    A field whose name is already an option of ``parser`` (``seed``: every
    suite has ``--seed``) is filled from that option, not added twice."""
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    existing = {action.dest for action in parser._actions}
    for f in dataclasses.fields(cls):
        if f.name in existing:
            continue
        meta, tp = f.metadata, hints[f.name]
        flag = "--" + f.name.replace("_", "-")
        shown = _shown_default(f, presets)
        text = meta.get("help", "") + shown
        if _base_type(tp) is bool:
            if f.default is True:
                group.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name,
                                   action="store_const", const=False, default=None,
                                   help=text or f"turn {f.name} off")
            else:
                group.add_argument(flag, dest=f.name, action="store_const", const=True,
                                   default=None, help=text)
            continue
        group.add_argument(flag, dest=f.name,
                           type=_parser_for(f.name, tp, meta.get("check"), meta.get("most", MAX_INT)),
                           choices=meta.get("choices"), default=None,
                           metavar=meta.get("metavar"), help=text)


def _shown_default(f: dataclasses.Field, presets: Optional[Presets]) -> str:
    if presets is None:
        return ""
    quick, full = getattr(presets.quick, f.name), getattr(presets.full, f.name)
    if quick is None and full is None:
        return ""  # an unset option's help says what happens instead ("default: all")
    if quick == full:
        return f" (default {_fmt(full)})"
    return f" (default {_fmt(full)}; --quick {_fmt(quick)})"


def _fmt(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def resolve(args: argparse.Namespace, presets: Presets[T]) -> T:
    """The preset ``--quick`` picks, with every option the user gave."""
    base = presets.pick(getattr(args, "quick", False))
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(base)
             if getattr(args, f.name, None) is not None}
    return dataclasses.replace(base, **given)
