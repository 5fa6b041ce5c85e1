"""Argument types shared by every command line (device, server, suites).

Each turns a bad value into ``argparse.ArgumentTypeError``, which argparse
prints as one line naming the option before exiting 2. The device agent
imports this module, so it stays Python 3.8 and stdlib-only.
"""
import argparse
import math


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
