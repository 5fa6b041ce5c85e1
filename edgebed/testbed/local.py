"""The embedded default: a server and a fleet of local agents for one run.

``local_testbed`` starts a server in this process whose spans go to a run's
writer, with agents started one by one (or ``external`` agents that boards
start elsewhere), and stops everything on exit. ``run_experiment`` is how
every testbed suite runs without a standing server: the same experiment
coroutine the standing server would run, on this local fleet.
"""
import argparse
import contextlib
import os
from typing import Any, Awaitable, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from edgebed import argtypes
from edgebed.device.cgroup import detect_cgroup_support
from edgebed.results.tensorboard import summary_writer_class, tensorboard_mirror
from edgebed.results.writer import RunWriter
from edgebed.server.core import ServerConfig
from edgebed.server.experiment import RunContext
from edgebed.server.links import measure_links
from edgebed.testbed.fleet import AgentSpec, DeviceClass, Fleet, fleet_specs
from edgebed.testbed.server_thread import ServerThread

Experiment = Callable[[RunContext, Any], Awaitable[Any]]

#: Local agents one host may start (each one a Python process holding torch).
MAX_AGENTS = 256
#: Devices a run may wait for (--external) or claim (--count).
MAX_DEVICES = 10_000


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """How to reach a standing server (suites with ``--server``, and the
    ``runs``, ``fleet``, ``watch``, ``cancel``, ``fetch`` verbs)."""
    group = parser.add_argument_group("standing server")
    group.add_argument("--server", default=os.environ.get("EDGEBED_SERVER"), metavar="HOST:PORT",
                       help="run on a standing edgebed-server and its attached devices instead "
                            "of a local fleet (default: $EDGEBED_SERVER)")
    group.add_argument("--devices", default="", metavar="NAMES|KEY=VALUE",
                       help="with --server: device names (a,b,c) or a label selector "
                            "(accelerator=cuda,power=nvml); default: every attached device")
    group.add_argument("--count", type=argtypes.at_most(argtypes.count, MAX_DEVICES), default=0, metavar="N",
                       help="with --server: claim N of the matching devices (default: all)")
    group.add_argument("--admin-token", default=os.environ.get("EDGEBED_ADMIN_TOKEN"),
                       help="the server's admin token (default: $EDGEBED_ADMIN_TOKEN)")
    group.add_argument("--tls-ca", default=None,
                       help="PEM of the CA that signed the server's certificate")


def add_testbed_arguments(parser: argparse.ArgumentParser, agents: Optional[int] = 4) -> None:
    """The options every suite that runs on devices shares: a standing server
    to submit to, or the local fleet to start (``agents=None``: the suite
    sizes its fleets itself, so there is no ``--agents``)."""
    add_server_arguments(parser)
    parser.add_argument("--tensorboard", default=None, metavar="DIR",
                        help="also write the run's scalars (accuracy, round time, energy per "
                             "round, prediction error) as TensorBoard event files under "
                             "DIR/<suite>/<run-id>/ while it runs (with --server: once it is "
                             "fetched)")
    group = parser.add_argument_group("local testbed (without --server)")
    if agents is not None:
        group.add_argument("--agents", type=argtypes.at_most(argtypes.at_least_one, MAX_AGENTS),
                           default=agents,
                           help="local agents to start (default %(default)s)")
    group.add_argument("--listen", type=argtypes.listen_address, default="127.0.0.1:0",
                       help="embedded server's address; 0.0.0.0:PORT to accept agents from boards")
    group.add_argument("--external", type=argtypes.at_most(argtypes.count, MAX_DEVICES), default=0,
                       metavar="N",
                       help="start no agents: wait for N agents started elsewhere (boards)")
    group.add_argument("--token", default=None, help="shared token for the agents")
    group.add_argument("--no-quota", action="store_true", help="do not apply CPU quotas")
    group.add_argument("--power-backend", default=None,
                       help="meter of the local agents (default: a Raspberry Pi 4 utilization "
                            "model, labelled estimated; 'auto' meters the host)")
    group.add_argument("--connect-timeout", type=argtypes.positive, default=300.0, metavar="S",
                       help="seconds to wait for the agents to register (default %(default)s)")


def quota_support(no_quota: bool, external: int) -> Tuple[str, bool]:
    """(what the host's cgroups allow, whether to give agents CPU quotas);
    says so when quotas were wanted but are not available."""
    support = detect_cgroup_support()
    use_quota = not no_quota and not external and not support.startswith("none")
    if not no_quota and not external and not use_quota:
        print(f"note: CPU quotas unavailable ({support}); agents run at full speed")
    return support, use_quota


@contextlib.contextmanager
def local_testbed(writer: RunWriter, specs: Sequence[AgentSpec], *,
                  listen: str = "127.0.0.1:0", external: int = 0, token: Optional[str] = None,
                  timeout_s: float = 300.0,
                  benchmark_s: float = 0.5) -> Iterator[Tuple[ServerThread, List[str]]]:
    """A server whose spans go to ``writer``, with ``specs`` started as local
    agents one by one (their logs under the run's ``agents/``), or
    ``external`` agents started elsewhere.

    Yields ``(server_thread, device_names)``; stops agents and server on exit.
    """
    srv = ServerThread(ServerConfig(listen=listen, token=token))
    srv.run(srv.server.add_span_sink, writer.event)
    fleet = None
    try:
        if external:
            print(f"waiting for {external} agents on port {srv.port}")
        else:
            fleet = Fleet(srv.address, specs, token=token, log_dir=writer.path / "agents",
                          benchmark_s=benchmark_s)
            fleet.start_sequentially(srv, timeout_s)
        srv.call(srv.server.wait_for_devices(external or len(specs), timeout_s))
        yield srv, srv.server.device_names()
    finally:
        if fleet is not None:
            fleet.stop()
        srv.stop()


class LocalFleets:
    """One run's results directory, and local fleets started for it in turn
    (most suites start one; feel-train one per K)."""

    def __init__(self, args: argparse.Namespace, writer: RunWriter, use_quota: bool) -> None:
        self.args = args
        self.writer = writer
        self.use_quota = use_quota

    @contextlib.contextmanager
    def start(self, classes: Sequence[DeviceClass], count: int, prefix: str,
              benchmark_s: float = 0.5) -> Iterator[Tuple[ServerThread, RunContext]]:
        """A server and ``count`` agents of ``classes`` (or ``--external``
        boards); yields the server thread and the context an experiment runs in."""
        args = self.args
        specs = [] if args.external else fleet_specs(classes, count, self.use_quota, prefix,
                                                     args.power_backend)
        with local_testbed(self.writer, specs, listen=args.listen, external=args.external,
                           token=args.token, timeout_s=args.connect_timeout,
                           benchmark_s=benchmark_s) as (srv, names):
            links = srv.call(measure_links(srv.server, names))
            yield srv, RunContext(srv.server, names, self.writer, links=links)


@contextlib.contextmanager
def local_fleets(args: argparse.Namespace, options: Any,
                 config: Optional[Dict[str, Any]] = None) -> Iterator[LocalFleets]:
    """The results directory of one local run (its config records ``options``,
    the testbed options and the host's cgroup support), open for fleets."""
    tensorboard = getattr(args, "tensorboard", None)
    if tensorboard:
        summary_writer_class()  # says how to install it, before a results directory exists
    support, use_quota = quota_support(args.no_quota, args.external)
    testbed = {k: getattr(args, k, None) for k in ("agents", "listen", "external", "no_quota",
                                                   "power_backend")}
    writer = RunWriter.from_args(args, config={"options": options, "cgroups": support,
                                               "testbed": testbed, **(config or {})})
    with writer, tensorboard_mirror(writer.path, tensorboard):
        yield LocalFleets(args, writer, use_quota)


def run_experiment(args: argparse.Namespace, experiment: Experiment, options: Any,
                   classes: Sequence[DeviceClass], prefix: str,
                   benchmark_s: float = 0.5) -> RunWriter:
    """Run ``experiment(ctx, options)`` on a local fleet of ``args.agents``
    agents of ``classes`` (or ``args.external`` boards); results under
    ``args.results/<suite>/<run-id>/``."""
    with local_fleets(args, options) as fleets:
        with fleets.start(classes, args.agents, prefix, benchmark_s) as (srv, ctx):
            srv.call(experiment(ctx, options))
    return fleets.writer
