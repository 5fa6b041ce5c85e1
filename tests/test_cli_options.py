"""Every option of every command line refuses what makes no sense (issue 12, part 8).

The command lines: every suite of ``edgebed-bench`` (built as its ``main``
builds them), its verbs (runs, fleet, watch, cancel, fetch), and the daemons
(``edgebed-server`` with ``enroll`` and ``ca``, ``edgebed-device``). Their
parsers are enumerated, not listed by hand: ``TABLE`` must name every option
that takes a value, so an option added without an entry fails
``test_the_table_names_every_option``.

A numeric option refuses 0 (unless 0 means something: ``ZERO_OK``),
negative numbers, NaN, infinities and numbers that overflow to one
(``1e400``); an integer option refuses more than a million (``MAX_INT``,
unless its entry says otherwise), and each entry adds the values its domain
rules out (a fraction above 1, 33 bits, a port above 65535, more cores than
the host has...). A refusal is exit status 2 with one line that names the
option, and never a traceback. Options whose values are names, paths or
tokens are listed as ``TEXT`` (with any values they must refuse).
"""
import argparse
import contextlib
import dataclasses
import io
import json
import os
import typing
from typing import Callable, Dict, List, Optional, Tuple

import pytest

from edgebed.benchmarks import cli, remote
from edgebed.benchmarks.options import MAX_INT
from edgebed.device import cli as device_cli
from edgebed.results.writer import RunWriter
from edgebed.server import cli as server_cli

CORES = os.cpu_count() or 1


@dataclasses.dataclass(frozen=True)
class Num:
    """A numeric option: its kind, whether 0 means something, and the values
    beyond the standard ones its domain rules out."""

    kind: str = "int"                 # "int", "float", or a comma-separated list of either
    zero_ok: bool = False
    extra: Tuple[str, ...] = ()
    most: Optional[int] = MAX_INT     # ints: the largest accepted (None: the entry's extra says)

    def bad_values(self) -> List[str]:
        values = [] if self.zero_ok else ["0"]
        values += ["-1", "nan", "inf", "-inf", "1e400"]
        if self.kind.startswith("int") and self.most is not None:
            values.append(str(self.most + 1))
        return values + list(self.extra)


@dataclasses.dataclass(frozen=True)
class Text:
    """An option whose value is a name, a path, a token or an address."""

    bad: Tuple[str, ...] = ()

    def bad_values(self) -> List[str]:
        return list(self.bad)


INT, FLOAT = Num("int"), Num("float")
COUNT = Num("int", zero_ok=True)      # 0 is "none" or "all"
TEXT = Text()
SEED = Num("int", zero_ok=True, most=2 ** 32 - 1)
THREADS = Num("int", most=256)
IMAGE_SIDE = Num("int", most=None, extra=("4097",))
BAD_LISTEN = ("127.0.0.1:65536", "127.0.0.1:99999", "127.0.0.1:-1", "127.0.0.1:x", "nohost", ":80")

COMMON = {"--results": TEXT, "--run-id": TEXT, "--seed": SEED}
SERVER = {"--server": TEXT, "--devices": TEXT, "--count": Num("int", zero_ok=True, most=10_000),
          "--admin-token": TEXT, "--tls-ca": TEXT}
TESTBED = {**SERVER, "--tensorboard": TEXT, "--listen": Text(BAD_LISTEN),
           "--external": Num("int", zero_ok=True, most=10_000), "--token": TEXT,
           "--power-backend": TEXT, "--connect-timeout": FLOAT}
AGENTS = {"--agents": Num("int", most=256)}
PLACEMENT = {
    "--gateways": INT, "--devices": INT, "--models": TEXT, "--agents": TEXT, "--episodes": INT,
    "--slots": INT, "--anchor": TEXT, "--cache-dir": TEXT, "--dataset": TEXT, "--data-root": TEXT,
    "--model-seed": SEED, "--runs": INT, "--workers": THREADS}

#: Every option that takes a value, per command line.
TABLE: Dict[str, Dict[str, object]] = {
    "quickstart": {**COMMON, **TESTBED, **AGENTS, "--size-mb": Num("float", extra=("2049",))},
    "transport": {**COMMON, **TESTBED, "--repeats": INT, "--shaped-s": Num("float", extra=("601",))},
    "links": {**COMMON, **TESTBED, **AGENTS},
    "tl-compression": {
        **COMMON, "--data": TEXT, "--data-root": TEXT, "--image-size": Num("int", most=None,
                                                                           extra=("4", "4097")),
        "--max-samples": Num("int", most=10 ** 9), "--lambdas": Num("int-list", extra=("1,0", "4,-8")),
        "--devices": INT, "--partition": TEXT, "--shards-per-device": INT, "--ae-epochs": INT,
        "--cnn-epochs": INT, "--batch-size": INT, "--ae-width": INT, "--threads": THREADS},
    "tl-solver": {**COMMON, "--draws": INT, "--workers": THREADS, "--timing-repeats": INT,
                  "--max-timing-devices": INT},
    "tl-testbed": {
        **COMMON, **TESTBED, **AGENTS, "--lam": INT, "--partition": TEXT, "--dataset": TEXT,
        "--data-root": TEXT, "--bandwidth-mhz": Num("float", extra=("100001",)),
        "--alpha": Num("float", zero_ok=True, extra=("1.5",)), "--ae-epochs": INT,
        "--cnn-epochs": INT, "--tune-epochs": INT},
    "feel-solver": {**COMMON, "--instances": INT, "--k-values": Num("int-list", extra=("2,0",)),
                    "--timing-repeats": INT, "--workers": THREADS},
    "feel-latency": {
        **COMMON, "--models": TEXT, "--batches": Num("int-list", extra=("1,0", "1,nan", "8")),
        "--repeats": INT, "--warmup": COUNT, "--model-warmup-s": Num("float", zero_ok=True,
                                                                     extra=("601",)),
        "--threads": THREADS, "--device": TEXT, "--num-classes": Num("int", extra=("1",))},
    "feel-train": {
        **COMMON, **TESTBED, "--k": Num("int-list", most=256, extra=("6,0", "6,-12")),
        "--partitions": TEXT, "--target": Num("float", extra=("1", "1.5")),
        "--budget-s": Num("float", extra=("86401",)), "--model": TEXT,
        "--bits": Num("int", most=32), "--fixed-batch": INT, "--local-batch": INT,
        "--individual-epochs": INT, "--base-lr": FLOAT, "--reference-batch": INT,
        "--cores": Num("float", extra=(str(CORES + 0.5),))},
    "split-profile": {
        **COMMON, "--models": TEXT, "--input-size": Num("int", most=None, extra=("32", "4097")),
        "--threads": THREADS, "--rounds": INT, "--repeats": INT, "--sweep-repeats": INT,
        "--warmup": COUNT, "--sweep": Text(("conv=-1", "conv=nan", "conv=1e9", f"conv={MAX_INT + 1}")),
        "--max-macs": Num("float", extra=("10",)),
        "--anchor-fraction": Num("float", zero_ok=True, extra=("1.5",)),
        "--holdout-fraction": Num("float", zero_ok=True, extra=("0.75", "1"))},
    "split-game": {
        **COMMON, "--repeats": INT, "--n-values": Num("int-list", extra=("5,0",)),
        "--bandwidth-points": Num("int", extra=("1",)), "--devices": INT,
        "--wake-prob": Num("float", extra=("1.5",)), "--neighbours": COUNT,
        "--input-size": Num("int", most=None, extra=("32", "4097")), "--profile": TEXT},
    "split-testbed": {
        **COMMON, **TESTBED, **AGENTS, "--model": TEXT, "--input-size": IMAGE_SIDE,
        "--inferences": INT, "--slots": INT, "--parallel-limit": INT,
        "--t-d": Num("float", extra=("601",)), "--profile-repeats": INT, "--server-threads": THREADS},
    "placement-train": {**COMMON, **PLACEMENT},
    "placement-testbed": {
        **COMMON, **TESTBED, **AGENTS, "--slots": Num("int", most=10_000), "--episodes": INT,
        "--train-slots": Num("int", most=10_000), "--agents-preset": TEXT, "--models": TEXT,
        "--devices-per-gateway": Num("int", most=64), "--band-khz": Num("float", extra=("1000001",)),
        "--edge-band-khz": Num("float", extra=("1000001",)),
        "--cloud-mbps": Num("float", extra=("100001",)), "--edge-mbps": Num("float", extra=("100001",)),
        "--cache-scale": Num("float", extra=("101",)), "--policies": TEXT, "--dataset": TEXT,
        "--data-root": TEXT},
    "placement-resources": {**COMMON, **PLACEMENT, "--policies": TEXT, "--eval-episodes": INT},
    "placement-rates": {**COMMON, **PLACEMENT, "--policies": TEXT, "--eval-episodes": INT},
    # the verbs of a standing server's client
    **{f"verb {verb}": {"--results": TEXT, **SERVER} for verb in remote.VERBS},
    # the daemons
    "edgebed-device": {
        "--server": Text(("nohost",)), "--name": Text(("a b",)), "--token": TEXT, "--tls-ca": TEXT,
        "--tls-cert": TEXT, "--tls-key": TEXT,
        "--cpu-quota": Num("float", zero_ok=True, extra=(str(CORES + 0.5),)),
        "--max-download-mb": Num("float", extra=("1e308", str(1024 * 1024 + 1))),
        "--link": Text(("0Mbit", "up=-1Mbit", "up=nanMbit", "up=infMbit", "1e400Mbit",
                        "up=1e300Gbit", "distance=150m,power=0W,bandwidth=1MHz")),
        "--label": Text(("novalue", "a=b c")), "--power-backend": TEXT,
        "--benchmark-s": Num("float", zero_ok=True, extra=("61",)), "--log-level": TEXT},
    "edgebed-server": {
        "--listen": Text(BAD_LISTEN), "--token": TEXT, "--admin-token": TEXT, "--state-dir": TEXT,
        "--client-ca": TEXT, "--link-ttl": Num("float", zero_ok=True), "--tls-cert": TEXT,
        "--tls-key": TEXT, "--max-transfer-mb": Num("float", extra=("1e308",)),
        "--retain-s": FLOAT, "--stream-idle-s": FLOAT, "--events": TEXT,
        "--http-listen": Text(("127.0.0.1:99999", "127.0.0.1:x", "nohost")), "--log-level": TEXT},
    "edgebed-server enroll": {"--role": TEXT, "--state-dir": TEXT},
    "edgebed-server ca init": {"--host": TEXT, "--state-dir": TEXT},
    "edgebed-server ca issue": {"--out": TEXT, "--state-dir": TEXT},
    "edgebed-server ca revoke": {"--state-dir": TEXT},
}

#: (command line, option, value) that a bug in a file this test's owner may
#: not change lets through; each is a strict xfail. (None now.)
KNOWN_BUGS: Dict[Tuple[str, str, str], str] = {}


# ---------------------------------------------------------------- the parsers

SUITES = list(cli.SUITES)


def suite_parser(name: str) -> argparse.ArgumentParser:
    """The parser ``edgebed-bench NAME`` parses with (as ``cli.main`` builds it)."""
    parser = argparse.ArgumentParser(prog=f"{cli.PROG} {name}")
    parser.add_argument("suite", help=argparse.SUPPRESS)
    cli.add_common_arguments(parser)
    cli.import_suite(name).add_arguments(parser)
    return parser


class _Captured(Exception):
    pass


def captured_parser(entry: Callable[[List[str]], object], argv: List[str]) -> argparse.ArgumentParser:
    """The parser ``entry(argv)`` builds, caught at its ``parse_args``."""
    seen: List[argparse.ArgumentParser] = []
    original = argparse.ArgumentParser.parse_args

    def capture(self, *args, **kwargs):
        seen.append(self)
        raise _Captured

    argparse.ArgumentParser.parse_args = capture
    try:
        with contextlib.suppress(_Captured):
            entry(argv)
    finally:
        argparse.ArgumentParser.parse_args = original
    assert seen, f"{entry.__name__} parsed nothing"
    return seen[0]


def subparsers(parser: argparse.ArgumentParser) -> Dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def all_parsers() -> Dict[str, argparse.ArgumentParser]:
    parsers = {name: suite_parser(name) for name in SUITES}
    parsers.update({f"verb {verb}": remote._verb_parser(verb) for verb in remote.VERBS})
    parsers["edgebed-device"] = captured_parser(device_cli.parse_args, [])
    parsers["edgebed-server"] = captured_parser(server_cli.parse_args, [])
    parsers["edgebed-server enroll"] = captured_parser(server_cli.enroll_main, ["x"])
    for action, sub in subparsers(captured_parser(server_cli.ca_main, ["init"])).items():
        parsers[f"edgebed-server ca {action}"] = sub
    return parsers


def valued_options(parser: argparse.ArgumentParser) -> Dict[str, argparse.Action]:
    """Every option of ``parser`` that takes a value, by its long name."""
    return {max(a.option_strings, key=len): a for a in parser._actions
            if a.option_strings and a.nargs != 0}


@pytest.fixture(autouse=True)
def _no_standing_server(monkeypatch):
    for name in ("EDGEBED_SERVER", "EDGEBED_TOKEN", "EDGEBED_ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_every_command_line_is_in_the_table():
    parsers = all_parsers()
    assert set(parsers) <= set(TABLE)  # (an entry of a suite not registered yet is harmless)
    assert {f"edgebed-server ca {a}" for a in ("init", "issue", "revoke")} <= set(parsers)


@pytest.mark.parametrize("command", sorted(TABLE))
def test_the_table_names_every_option(command):
    """An option added to a command line without an entry here fails, so
    nobody adds a number that refuses nothing."""
    parsers = all_parsers()
    if command not in parsers:
        pytest.skip(f"{command} is not registered (yet)")
    options = valued_options(parsers[command])
    assert set(options) == set(TABLE[command])
    for flag, entry in TABLE[command].items():
        assert _looks_numeric(options[flag]) == isinstance(entry, Num), flag


def _accepts(action: argparse.Action, text: str) -> bool:
    try:
        action.type(text)
        return True
    except (argparse.ArgumentTypeError, ValueError, TypeError):
        return False


def _looks_numeric(action: argparse.Action) -> bool:
    """Its type takes a number and refuses a word."""
    return action.type is not None and not action.choices \
        and any(_accepts(action, n) for n in ("1", "2", "64", "0.5", "1e6")) \
        and not _accepts(action, "five")


def test_the_table_knows_each_suites_numeric_options():
    """The Options record of every suite that has one agrees with the table
    on which of its fields are numbers."""
    for name in SUITES:
        options = getattr(cli.import_suite(name), "Options", None)
        if options is None:
            continue
        hints = typing.get_type_hints(options)
        numeric = {"--" + f.name.replace("_", "-") for f in dataclasses.fields(options)
                   if _numeric(hints[f.name]) and f.name != "seed"}
        listed = {flag for flag, entry in TABLE.get(name, {}).items() if isinstance(entry, Num)}
        assert numeric <= listed, (name, numeric - listed)


def _numeric(tp) -> bool:
    if typing.get_origin(tp) is typing.Union:
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if typing.get_origin(tp) in (list, tuple):
        tp = typing.get_args(tp)[0]
    return tp in (int, float)


# ---------------------------------------------------------------- refusals

def _cases() -> List[object]:
    cases = []
    for command, options in sorted(TABLE.items()):
        if not command.startswith(("verb ", "edgebed-")) and command not in cli.SUITES:
            continue  # a suite not registered yet
        for flag, entry in options.items():
            for value in entry.bad_values():
                marks = ()
                if (command, flag, value) in KNOWN_BUGS:
                    marks = pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[command, flag, value])
                cases.append(pytest.param(command, flag, value, marks=marks,
                                          id=f"{command}|{flag}|{value}"))
    return cases


class _Reached(BaseException):
    """A suite got past its options: it was about to write results (and run)."""


def _refused_by_bench(argv: List[str], tmp_path, monkeypatch) -> Tuple[int, str]:
    def reached(*args, **kwargs):
        raise _Reached(" ".join(argv))

    monkeypatch.setattr(RunWriter, "from_args", reached)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = cli.main(argv)
        except _Reached:
            pytest.fail(f"accepted: {' '.join(argv)}")
    return rc, err.getvalue()


def _refused_by_daemon(entry, argv: List[str]) -> Tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            result = entry(argv)
        except SystemExit as exc:
            return exc.code, err.getvalue()
    pytest.fail(f"accepted: {argv} -> {result!r}")


def refuse(command: str, flag: str, value: str, tmp_path, monkeypatch) -> Tuple[int, str]:
    """Run ``command`` with ``flag value``; (exit status, stderr)."""
    arg = f"{flag}={value}"  # so a value starting with '-' is not taken for an option
    if command in TABLE and command in cli.SUITES:
        return _refused_by_bench([command, arg, "--results", str(tmp_path)], tmp_path, monkeypatch)
    if command.startswith("verb "):
        verb = command.split()[1]
        run = ["r-1"] if verb in ("watch", "cancel", "fetch") else []
        server = [] if flag == "--server" else ["--server", "127.0.0.1:1"]
        return _refused_by_bench([verb, *run, *server, arg, "--results", str(tmp_path)],
                                 tmp_path, monkeypatch)
    state = ["--state-dir", str(tmp_path / "state")]
    if command == "edgebed-device":
        base = [a for a in (["--server", "127.0.0.1:1"], ["--name", "x"])
                if a[0] != flag]
        return _refused_by_daemon(device_cli.parse_args, [x for a in base for x in a] + [arg])
    if command == "edgebed-server":
        return _refused_by_daemon(server_cli.parse_args, state + [arg])
    if command == "edgebed-server enroll":
        return _refused_by_daemon(server_cli.enroll_main, ["x", arg])
    action = command.split()[-1]
    extra = {"init": [], "issue": ["x", "--out", str(tmp_path / "out")], "revoke": ["x"]}[action]
    return _refused_by_daemon(server_cli.ca_main, [action, *extra, arg])


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    return lines[-1] if lines else ""


@pytest.mark.parametrize("command, flag, value", _cases())
def test_a_value_that_makes_no_sense_is_refused_naming_the_option(command, flag, value, tmp_path,
                                                                  monkeypatch):
    rc, err = refuse(command, flag, value, tmp_path, monkeypatch)
    assert rc == 2, (rc, err)
    assert "Traceback" not in err
    line = _error_line(err)
    assert flag in line and "error" in line, err
    assert not (tmp_path / command).exists()  # no results directory was made


# ---------------------------------------------------------------- what is accepted

ACCEPTED = [
    ("feel-train", ["--k", "6,12", "--bits", "32", "--target", "0.9"], "k", [6, 12]),
    ("quickstart", ["--connect-timeout", "0.5", "--size-mb", "2048"], "connect_timeout", 0.5),
    ("quickstart", ["--external", "0", "--agents", "256"], "agents", 256),
    ("split-profile", ["--sweep", "conv=0,fc=1000000"], "sweep", ("conv=0", "fc=1000000")),
    ("placement-train", ["--model-seed", str(2 ** 32 - 1)], "model_seed", 2 ** 32 - 1),
    ("tl-compression", ["--seed", str(2 ** 32 - 1), "--max-samples", "1200000"],
     "max_samples", 1_200_000),
]


@pytest.mark.parametrize("suite, argv, dest, value", ACCEPTED)
def test_values_at_the_edges_of_the_domains_are_accepted(suite, argv, dest, value):
    args = suite_parser(suite).parse_args([suite, *argv])
    assert getattr(args, dest) == value


def test_the_device_accepts_what_makes_sense():
    args = device_cli.parse_args(["--server", "127.0.0.1:1", "--name", "x", "--cpu-quota",
                                  str(CORES), "--benchmark-s", "0", "--link", "up=5Mbit,down=1Gbit",
                                  "--max-download-mb", str(1024 * 1024)])
    assert args.cpu_quota == CORES and args.benchmark_s == 0
    assert args.agent.link.downlink_bps == 1e9


def test_the_server_accepts_what_makes_sense():
    config, _ = server_cli.parse_args(["--listen", "127.0.0.1:65535", "--max-transfer-mb",
                                       str(1024 * 1024)])
    assert config.listen == "127.0.0.1:65535" and config.max_transfer_bytes == 1024 ** 4
    for listen in ("0.0.0.0:0", "[::]:50051", "localhost:1"):
        assert server_cli.parse_args(["--listen", listen])[0].listen == listen


def test_one_listen_address_rule_for_the_server_and_the_suites():
    from edgebed import argtypes

    def listen_type(parser):
        return valued_options(parser)["--listen"].type

    assert listen_type(all_parsers()["edgebed-server"]) is argtypes.listen_address
    assert listen_type(suite_parser("quickstart")) is argtypes.listen_address


def test_feel_train_k_zero_is_refused_before_anything_runs(tmp_path, monkeypatch):
    """It used to be ``--devices 0``: a ZeroDivisionError after a fleet started."""
    rc, err = refuse("feel-train", "--k", "0", tmp_path, monkeypatch)
    assert rc == 2 and "--k" in _error_line(err)


def test_an_unknown_flag_still_exits_2(tmp_path, monkeypatch):
    rc, err = _refused_by_bench(["quickstart", "--no-such-flag", "1"], tmp_path, monkeypatch)
    assert rc == 2 and "--no-such-flag" in err



# ---------------------------------------------------------------- a standing server's runs

SUBMITTED = [  # (suite, options_json, the words the refusal holds; None: queued)
    ("quickstart", '{"size_mb": -1}', ["size_mb", "-1"]),
    ("quickstart", '{"size_mb": 1e308}', ["size_mb", "at most 2048"]),
    ("quickstart", '{"size_mb": NaN}', ["size_mb", "finite"]),
    ("quickstart", '{"size_mb": 2049}', ["size_mb"]),
    ("quickstart", '{"seed": -1}', ["seed", "0..4294967295"]),
    ("quickstart", json.dumps({"seed": 2 ** 32}), ["seed"]),
    ("split-testbed", '{"inferences": 1000001}', ["inferences", "at most 1000000"]),
    ("quickstart", json.dumps({"size_mb": 2048, "seed": 2 ** 32 - 1}), None),
    ("links", "{}", None),
]


@pytest.fixture(scope="module")
def parked_server(tmp_path_factory):
    import grpc

    from edgebed.proto import edge_pb2 as pb
    from edgebed.proto.channel import CHANNEL_OPTIONS
    from edgebed.server.core import ServerConfig
    from edgebed.testbed import ServerThread

    srv = ServerThread(ServerConfig(listen="127.0.0.1:0"),
                       state_dir=tmp_path_factory.mktemp("submitted"))
    try:
        with grpc.insecure_channel(srv.address, options=CHANNEL_OPTIONS) as channel:
            channel.unary_unary("/edgebed.v1.EdgeService/Register")(
                pb.RegisterRequest(name="parked").SerializeToString(), timeout=10)
        yield srv
    finally:
        srv.stop()


@pytest.mark.parametrize("suite, options_json, words", SUBMITTED)
def test_a_submitted_runs_options_are_checked_as_the_command_line_checks_them(
        parked_server, suite, options_json, words):
    """ControlPlane.submit applies the fields' own checks (edgebed.argtypes.
    record_problems, what the option parsers apply) before anything is queued."""
    import grpc

    from edgebed.proto import control_pb2 as cpb
    from edgebed.proto.channel import CHANNEL_OPTIONS

    if suite not in cli.SUITES:
        pytest.skip(f"{suite} is not registered")
    with grpc.insecure_channel(parked_server.address, options=CHANNEL_OPTIONS) as channel:
        submit = channel.unary_unary("/edgebed.v1.Control/Submit")
        request = cpb.SubmitRequest(suite=suite, options_json=options_json,
                                    devices=["parked"]).SerializeToString()
        if words is None:  # queued (parked never attaches: it never starts)
            run = cpb.RunInfo.FromString(submit(request, timeout=10))
            channel.unary_unary("/edgebed.v1.Control/Cancel")(
                cpb.RunRef(run_id=run.run_id).SerializeToString(), timeout=10)
            return
        with pytest.raises(grpc.RpcError) as info:
            submit(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert all(word in info.value.details() for word in words), info.value.details()


@pytest.mark.parametrize("name", SUITES)
def test_every_suites_presets_pass_their_own_checks(name):
    """What a client submits from a preset is never refused by the server."""
    from edgebed.argtypes import record_problems

    presets = getattr(cli.import_suite(name), "PRESETS", None)
    if presets is None:
        pytest.skip(f"{name} has no presets")
    assert record_problems(presets.quick) == []
    assert record_problems(presets.full) == []
