"""``edgebed-bench SUITE [options]``: the one entry point for every benchmark suite.

A suite is a module ``edgebed.benchmarks.<module>`` that a workload of the
registry (``edgebed.workloads``) lists, and that exposes
``add_arguments(parser)`` (its own options) and ``run(args) -> int``.
Only the chosen suite is imported. Every suite also gets the common options
``--results DIR``, ``--run-id ID``, ``--quick``, ``--seed N`` and ``-v``;
``args.suite`` holds the registered (dashed) suite name, so a suite can open
its results with ``RunWriter.from_args(args, config)``.

``edgebed-bench --list`` lists the suites with the first line of each docstring.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from types import ModuleType
from typing import Sequence

from edgebed import argtypes
from edgebed.benchmarks.options import resolve
from edgebed.benchmarks.remote import VERBS, main_verb, run_remote
from edgebed.workloads import suite_modules

logger = logging.getLogger(__name__)

#: CLI suite name (dashes) -> its module, from the workload registry.
SUITES: dict[str, str] = suite_modules()

PROG = "edgebed-bench"


def canonical_suite(name: str) -> str | None:
    """The registered name for ``name`` (``split_x`` finds ``split-x``), or ``None``."""
    if name in SUITES:
        return name
    dashed = name.replace("_", "-")
    return dashed if dashed in SUITES else None


def suite_module_name(name: str) -> str:
    """The full module name of the registered suite ``name``."""
    return SUITES[name]


def import_suite(name: str) -> ModuleType:
    """Import the registered suite ``name`` (raises whatever the import raises)."""
    return importlib.import_module(suite_module_name(name))


def describe(module: ModuleType) -> str:
    """The first non-empty line of a module's docstring."""
    for line in (module.__doc__ or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return "(no description)"


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every suite accepts."""
    group = parser.add_argument_group("common options")
    group.add_argument("--results", metavar="DIR", default="results",
                       help="root of the results tree: DIR/<suite>/<run-id>/ (default: %(default)s)")
    group.add_argument("--run-id", metavar="ID", default=None,
                       help="run directory name (default: UTC timestamp plus a random suffix)")
    group.add_argument("--quick", action="store_true",
                       help="a small, fast configuration (smoke test)")
    group.add_argument("--seed", metavar="N", type=argtypes.seed, default=0,
                       help="random seed (default: %(default)s)")
    group.add_argument("-v", "--verbose", action="count", default=0,
                       help="log more: -v info, -vv debug")


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=f"{PROG} SUITE [options]  |  {PROG} --list  |  {PROG} {{{','.join(VERBS)}}} --server HOST:PORT",
        description="Run an edgebed benchmark suite; results go to DIR/<suite>/<run-id>/.",
        epilog=f"suites: {', '.join(SUITES)}. "
               f"'{PROG} --list' describes them, '{PROG} SUITE -h' shows a suite's options.",
        add_help=False,
    )
    parser.add_argument("suite", nargs="?", help="the suite to run")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    parser.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    add_common_arguments(parser)
    return parser


def list_suites(file=None) -> None:
    """Print each registered suite with its description, or why it did not import."""
    out = sys.stdout if file is None else file
    width = max((len(name) for name in SUITES), default=0)
    for name in SUITES:
        try:
            text = describe(import_suite(name))
        except Exception as exc:  # noqa: BLE001 - one broken suite must not hide the others
            text = f"[cannot import {suite_module_name(name)}: {type(exc).__name__}: {exc}]"
        out.write(f"{name.ljust(width)}  {text}\n")


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    root = logging.getLogger()
    if root.handlers:
        root.setLevel(level)
    else:
        logging.basicConfig(level=level,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the chosen suite, return its exit code."""
    argv_list: list[str] = list(sys.argv[1:] if argv is None else argv)
    if argv_list and argv_list[0] in VERBS:  # runs, fleet, watch, cancel, fetch
        return main_verb(argv_list)
    top = _top_parser()
    try:
        first, _ = top.parse_known_args(argv_list)
    except SystemExit as exc:
        return _exit_code(exc)

    if first.list:
        list_suites()
        return 0
    if first.suite is None:
        if first.help:
            top.print_help()
            return 0
        top.print_usage(sys.stderr)
        print(f"{PROG}: error: no suite given; known suites: {', '.join(SUITES)}",
              file=sys.stderr)
        return 2
    name = canonical_suite(first.suite)
    if name is None:
        print(f"{PROG}: error: unknown suite {first.suite!r}; known suites: {', '.join(SUITES)}",
              file=sys.stderr)
        return 2

    os.environ.setdefault("MPLBACKEND", "Agg")  # before any suite imports matplotlib
    try:
        module = import_suite(name)
    except ImportError as exc:
        print(f"{PROG}: error: cannot import suite {name!r} ({suite_module_name(name)}): {exc}",
              file=sys.stderr)
        missing = getattr(exc, "name", None)
        if missing and not missing.startswith("edgebed"):
            print(f"{PROG}: hint: pip install 'edgebed[bench]' installs the benchmark "
                  "dependencies", file=sys.stderr)
        return 1
    run = getattr(module, "run", None)
    if not callable(run):
        print(f"{PROG}: error: suite module {module.__name__} has no run(args)", file=sys.stderr)
        return 2

    parser = argparse.ArgumentParser(
        prog=f"{PROG} {name}",
        description=module.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("suite", help=argparse.SUPPRESS)
    add_common_arguments(parser)
    add_arguments = getattr(module, "add_arguments", None)
    if add_arguments is not None:
        add_arguments(parser)
    try:
        args = parser.parse_args(argv_list)
    except SystemExit as exc:
        return _exit_code(exc)
    args.suite = name

    _configure_logging(args.verbose)
    logger.debug("running suite %s with %s", name, args)
    try:
        if getattr(args, "server", None):  # a standing server runs the suite's experiment
            if not hasattr(module, "experiment"):
                raise ValueError(f"{name} runs no experiment on devices; run it without --server")
            rc = run_remote(args, resolve(args, module.PRESETS))
        else:
            rc = run(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except ValueError as exc:
        # Bad input (an unknown model, an impossible option): say what, not
        # where; -v logs the traceback for a ValueError that is really a bug.
        logger.debug("suite %s failed", name, exc_info=True)
        print(f"{PROG} {name}: error: {exc}", file=sys.stderr)
        return 2
    return 0 if rc is None else int(rc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
