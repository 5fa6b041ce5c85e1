import pytest

from edgebed.server.core import ServerConfig
from edgebed.testbed import AgentSpec, Fleet, ServerThread


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module: on a shared 2-core host two threads
    spin against other work (and the timing helpers refuse more than one)."""
    import torch  # here, not at the top: most test modules never load torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def server():
    """A real edge server on loopback, port 0, in a background thread."""
    srv = ServerThread(ServerConfig(listen="127.0.0.1:0", max_transfer_bytes=64 * 1024 * 1024,
                                    heartbeat_interval_s=0.5, heartbeat_timeout_s=5.0))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def two_agents(server, tmp_path_factory):
    """Two real agent processes registered with ``server``."""
    fleet = Fleet(server.address, [AgentSpec("alpha", power_backend="utilization"),
                                   AgentSpec("beta", power_backend="null")],
                  log_dir=tmp_path_factory.mktemp("agents"), benchmark_s=0.05)
    fleet.start()
    fleet.wait_registered(server, 2, 120)
    yield fleet
    fleet.stop()
