"""Argument types shared by every command line (device, server, suites).

Each turns a bad value into ``argparse.ArgumentTypeError``, which argparse
prints as one line naming the option before exiting 2. The device agent
imports this module, so it stays Python 3.8 and stdlib-only.
"""
import argparse
import dataclasses
import ipaddress
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple


def non_negative(text: str) -> float:
    """A finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def positive(text: str) -> float:
    """A finite number > 0."""
    value = non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _integer(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"expected {least} or more, got {value}")
    return value


def count(text: str) -> int:
    """An integer >= 0."""
    return _integer(text, 0)


def at_least_one(text: str) -> int:
    """An integer >= 1."""
    return _integer(text, 1)


def at_most(convert: Callable[[str], Any], most: float, unit: str = "") -> Callable[[str], Any]:
    """The argument type ``convert`` that also refuses values above ``most``."""
    def parse(text: str) -> Any:
        value = convert(text)
        if value > most:
            raise argparse.ArgumentTypeError(f"expected at most {most:.10g}{unit}, got {text!r}")
        return value
    return parse


def host_port(text: str, what: str = "an address") -> Tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as (host, port), with a port in
    0-65535; ValueError otherwise (gRPC would bind port 99999 as 34463)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{what} must be HOST:PORT with a port in 0-65535, got {text!r}")
    return (host[1:-1] if host.startswith("[") and host.endswith("]") else host), int(port)


def is_loopback_host(host: Optional[str]) -> bool:
    """Whether ``host`` names this machine's loopback: ``localhost``, an
    address in 127.0.0.0/8, ``::1`` or an IPv4-mapped ``::ffff:127.x.y.z``
    (IPv6 with or without brackets or a ``%zone``). Any other name is not
    (it may resolve anywhere); nor is an empty one."""
    if not host:
        return False
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host.split("%", 1)[0]
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def listen_address(text: str) -> str:
    """An address to bind: ``HOST:PORT`` with a port in 0-65535 (0: any free one)."""
    try:
        host_port(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT with a port in 0-65535, got {text!r}"
                                         ) from None
    return text


# ---------------------------------------------------------------- option records
# A suite's options are a dataclass whose fields carry their checks in their
# metadata (``benchmarks.options.option``: ``check``, ``most``, ``choices``).
# The command line applies them as it parses; a record that arrives another
# way (a run submitted to a standing server) gets the same checks here.

#: An integer option counts no further than this unless its field says so.
MAX_INT = 1_000_000
#: A seed numpy's legacy generators and every torch generator accept.
MAX_SEED = 2 ** 32 - 1

Check = Callable[[Any], Optional[str]]  # the problem with a value, or None


def value_problem(value: Any, check: Optional[Check] = None, most: Optional[int] = MAX_INT,
                  choices: Optional[Sequence[Any]] = None) -> Optional[str]:
    """What is wrong with one option value (None: nothing): a float must be
    finite, an int at most ``most``, a value one of ``choices``, and then
    ``check`` has its say."""
    if isinstance(value, float) and not math.isfinite(value):
        return "expected a finite number"
    if isinstance(value, int) and not isinstance(value, bool) and most is not None \
            and value > most:
        return f"must be at most {most}"
    if choices is not None and value not in choices:
        return f"must be one of {', '.join(map(str, choices))}"
    return check(value) if check is not None else None


def seed_problem(value: Any) -> Optional[str]:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        return f"expected 0..{MAX_SEED}"
    return None


def seed(text: str) -> int:
    """A seed every generator takes: an integer in 0..2**32 - 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    problem = seed_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(f"{problem}, got {value}")
    return value


#: Fields every suite's command line fills from a common option, not from
#: their own metadata: checked as that option checks them.
COMMON_FIELDS: Dict[str, Check] = {"seed": seed_problem}


def record_problems(record: Any) -> List[Tuple[str, str]]:
    """(field, problem) for each field of the option record ``record`` whose
    value its command line would refuse (each item of a list field on its own)."""
    problems = []
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if value is None or isinstance(value, bool):
            continue
        common = COMMON_FIELDS.get(f.name)
        meta = f.metadata
        for item in (value if isinstance(value, (list, tuple)) else [value]):
            if common is not None:
                problem = common(item)
            else:
                problem = value_problem(item, meta.get("check"), meta.get("most", MAX_INT),
                                        meta.get("choices"))
            if problem:
                problems.append((f.name, f"{problem}, got {item!r}"))
                break
    return problems
