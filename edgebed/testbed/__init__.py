"""The testbed harness the suites and the tests share: a server in a
background thread, a fleet of real agent processes, and the embedded local
testbed every suite runs on when no standing server is given."""
from edgebed.testbed.fleet import AgentSpec, DeviceClass, Fleet, fleet_specs
from edgebed.testbed.local import (
    LocalFleets,
    add_server_arguments,
    add_testbed_arguments,
    local_fleets,
    local_testbed,
    quota_support,
    run_experiment,
)
from edgebed.testbed.server_thread import ServerThread

__all__ = ["AgentSpec", "DeviceClass", "Fleet", "LocalFleets", "ServerThread",
           "add_server_arguments", "add_testbed_arguments", "fleet_specs", "local_fleets",
           "local_testbed", "quota_support", "run_experiment"]
