"""Every device proves who it is: enrolled credentials, mutual TLS, the
name in every request bound to the caller, roles, and safe defaults."""
import subprocess
import sys
import time

import grpc
import pytest
import torch

from edgebed.proto import control_pb2 as cpb
from edgebed.proto import control_pb2_grpc
from edgebed.proto import edge_pb2 as pb
from edgebed.proto import edge_pb2_grpc
from edgebed.proto.channel import CHANNEL_OPTIONS, auth_metadata
from edgebed.proto.codec import encode_transfer
from edgebed.proto.contracts import runtime as rt
from edgebed.proto.records import CapabilityProfile, Span
from edgebed.server import ca
from edgebed.server.core import ServerConfig
from edgebed.server.identity import CredentialStore
from edgebed.testbed import AgentSpec, Fleet, ServerThread
from tests.helpers import wait_until


def _register(stub, name, token):
    return stub.Register(pb.RegisterRequest(name=name, profile=CapabilityProfile().to_proto()),
                         metadata=auth_metadata(token))


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory):
    """A server with enrolled credentials; agent "owner" attached with its own."""
    state = tmp_path_factory.mktemp("state")
    store = CredentialStore(state)
    tokens = {name: store.enroll(name) for name in ("owner", "intruder")}
    tokens["admin"] = store.enroll("ops", role="admin")
    srv = ServerThread(ServerConfig(listen="127.0.0.1:0", heartbeat_interval_s=0.5,
                                    heartbeat_timeout_s=5.0), state_dir=state)
    fleet = Fleet(srv.address, [AgentSpec("owner", power_backend="null")], token=tokens["owner"],
                  log_dir=tmp_path_factory.mktemp("agents"), benchmark_s=0.01).start()
    fleet.wait_registered(srv, 1, 120)
    channel = grpc.insecure_channel(srv.address, options=CHANNEL_OPTIONS)
    yield srv, edge_pb2_grpc.EdgeServiceStub(channel), tokens, fleet
    channel.close()
    fleet.stop()
    srv.stop()


def test_the_credential_is_kept_as_a_hash_only(enrolled, tmp_path):
    store = CredentialStore(tmp_path)
    token = store.enroll("pi-1")
    text = (tmp_path / "credentials.json").read_text()
    assert token not in text
    assert store.identify(token).name == "pi-1"
    assert store.identify(token + "x") is None
    assert (tmp_path / "credentials.json").stat().st_mode & 0o077 == 0  # 0600


def test_enroll_prints_the_credential_once(tmp_path):
    out = subprocess.run([sys.executable, "-m", "edgebed.server.cli", "enroll", "jetson-1",
                          "--state-dir", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert token.startswith("ebc1_")
    assert CredentialStore(tmp_path).identify(token).name == "jetson-1"
    bad = subprocess.run([sys.executable, "-m", "edgebed.server.cli", "enroll", "two words",
                          "--state-dir", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr


def test_no_credential_or_a_wrong_one_is_unauthenticated(enrolled):
    _, stub, _, _ = enrolled
    for token in (None, "ebc1_forged"):
        with pytest.raises(grpc.RpcError) as info:
            _register(stub, "owner", token)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_credential_cannot_register_another_name(enrolled):
    _, stub, tokens, _ = enrolled
    with pytest.raises(grpc.RpcError) as info:
        _register(stub, "owner", tokens["intruder"])
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "intruder may not act as owner" in info.value.details()


def test_a_credential_cannot_upload_or_download_as_another_device(enrolled):
    srv, stub, tokens, _ = enrolled
    _register(stub, "intruder", tokens["intruder"])
    poisoned = encode_transfer({"grad": torch.ones(4)}, device_id="owner",
                               key="feel/r/grad/0/owner")
    with pytest.raises(grpc.RpcError) as info:
        stub.Upload(poisoned, metadata=auth_metadata(tokens["intruder"]))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert not srv.server.inbox.pending()
    srv.run(lambda: srv.server.offer("secret", {"w": torch.ones(3)}, device="owner"))
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Download(pb.DownloadRequest(device_id="owner", key="secret"),
                           metadata=auth_metadata(tokens["intruder"])))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    srv.run(srv.server.forget, "secret")


def test_an_admin_credential_cannot_act_as_a_device_and_a_device_one_cannot_use_control(enrolled):
    srv, stub, tokens, _ = enrolled
    with pytest.raises(grpc.RpcError) as info:
        _register(stub, "ops", tokens["admin"])
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with grpc.insecure_channel(srv.address) as channel:
        control = control_pb2_grpc.ControlStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            control.ListRuns(cpb.ListRunsRequest(), metadata=auth_metadata(tokens["owner"]))
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "device credential" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:  # an admin is enrolled: loopback is not enough
            control.ListRuns(cpb.ListRunsRequest())
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert control.ListRuns(cpb.ListRunsRequest(),
                                metadata=auth_metadata(tokens["admin"])).runs is not None


def test_spans_are_bound_to_the_sessions_device(enrolled):
    srv, stub, tokens, _ = enrolled
    reply = _register(stub, "intruder", tokens["intruder"])
    spans = []
    srv.run(srv.server.add_span_sink, spans.append)
    forged = Span(run_id="r", phase="upload", device="owner", start_s=0.0, end_s=1.0).to_proto()

    def messages():
        yield pb.DeviceMessage(open=pb.SessionOpen(device_id="intruder",
                                                   session_key=reply.session_key))
        yield pb.DeviceMessage(span=forged)
        time.sleep(1.0)

    call = stub.Session(messages(), metadata=auth_metadata(tokens["intruder"]))
    try:
        wait_until(lambda: spans, 10, what="the span")
    finally:
        call.cancel()
        srv.run(srv.server.remove_span_sink, spans.append)
    assert [s.device for s in spans if s.run_id == "r"] == ["intruder"]


def test_a_live_name_is_taken_unless_the_same_identity_proves_itself(enrolled, tmp_path):
    srv, stub, tokens, fleet = enrolled
    # The same credential (the agent restarted before its old session timed
    # out): the stale session is replaced, and its stream ends with a reason.
    session = srv.run(srv.server.registry.session, "owner")
    _register(stub, "owner", tokens["owner"])
    assert session.closed
    assert "replaced by a new registration of the same device" in session.close_reason
    # The agent itself comes back by registering again.
    wait_until(lambda: srv.server.registry.get("owner").connected, 60, what="owner to return")
    assert srv.call(srv.server.call("owner", rt.PING, rt.PingIns(), 30)).name == "owner"


def test_the_shared_token_cannot_take_over_a_live_name(tmp_path):
    srv = ServerThread(ServerConfig(listen="127.0.0.1:0", token="shared"))
    fleet = Fleet(srv.address, [AgentSpec("board", power_backend="null")], token="shared",
                  log_dir=tmp_path, benchmark_s=0.01).start()
    try:
        fleet.wait_registered(srv, 1, 120)
        with grpc.insecure_channel(srv.address) as channel:
            with pytest.raises(grpc.RpcError) as info:
                _register(edge_pb2_grpc.EdgeServiceStub(channel), "board", "shared")
        assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert srv.server.registry.get("board").connected  # the real board is untouched
    finally:
        fleet.stop()
        srv.stop()


# ---------------------------------------------------------------- mutual TLS

@pytest.fixture(scope="module")
def fleet_ca(tmp_path_factory):
    state = tmp_path_factory.mktemp("ca-state")
    paths = ca.init_ca(state)
    certs = tmp_path_factory.mktemp("certs")
    for name in ("tls-dev", "tls-other", "tls-gone"):
        ca.issue(state, name, certs)
    return state, paths, certs


def _mtls_server(state, paths):
    return ServerThread(ServerConfig(listen="127.0.0.1:0", tls_cert=str(paths["server_cert"]),
                                     tls_key=str(paths["server_key"]),
                                     client_ca=str(paths["ca"]), state_dir=str(state)))


def _agent(srv, name, certs, ca_pem, cert_name=None, tmp_path=None):
    cert_name = cert_name or name
    return subprocess.run(
        [sys.executable, "-m", "edgebed.device.cli", "--server", f"localhost:{srv.port}",
         "--name", name, "--tls-ca", str(ca_pem), "--tls-cert", str(certs / f"{cert_name}.pem"),
         "--tls-key", str(certs / f"{cert_name}.key"), "--power-backend", "null",
         "--benchmark-s", "0"], capture_output=True, text=True, timeout=60)


def test_mutual_tls_names_the_device_and_refuses_revoked_and_foreign_certificates(fleet_ca,
                                                                                  tmp_path):
    state, paths, certs = fleet_ca
    srv = _mtls_server(state, paths)
    try:
        fleet = Fleet(f"localhost:{srv.port}", [AgentSpec(
            "tls-dev", power_backend="null",
            extra_args=("--tls-ca", str(paths["ca"]), "--tls-cert", str(certs / "tls-dev.pem"),
                        "--tls-key", str(certs / "tls-dev.key")))],
            log_dir=tmp_path, benchmark_s=0.01).start()
        try:
            fleet.wait_registered(srv, 1, 120)
            record = srv.server.registry.get("tls-dev")
            assert record.identity.via == "certificate"
            assert record.identity.name == "tls-dev"
        finally:
            fleet.stop()
        # A certificate of another name cannot register this one.
        wrong = _agent(srv, "tls-dev", certs, paths["ca"], cert_name="tls-other")
        assert wrong.returncode == 2
        assert "tls-other may not act as tls-dev" in wrong.stderr
        # A revoked certificate is refused.
        ca.revoke(state, "tls-gone")
        revoked = _agent(srv, "tls-gone", certs, paths["ca"])
        assert revoked.returncode == 2
        assert "revoked" in revoked.stderr
        # No certificate at all: the TLS handshake itself fails.
        creds = grpc.ssl_channel_credentials(paths["ca"].read_bytes())
        with grpc.secure_channel(f"localhost:{srv.port}", creds) as channel:
            with pytest.raises(grpc.RpcError) as info:
                _register(edge_pb2_grpc.EdgeServiceStub(channel), "tls-dev", None)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        srv.stop()


# ---------------------------------------------------------------- safe defaults

def _server(*args, timeout=20):
    return subprocess.run([sys.executable, "-m", "edgebed.server.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_off_loopback_the_server_refuses_to_start_without_authentication(tmp_path):
    out = _server("--listen", "0.0.0.0:0", "--state-dir", str(tmp_path))
    assert out.returncode == 2
    assert "refusing to serve 0.0.0.0:0" in out.stderr
    assert "--insecure" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("args, warning", [
    (["--insecure"], "INSECURE"),
    (["--token", "t"], "credentials travel in cleartext"),
])
def test_insecure_or_cleartext_serving_is_said_out_loud(tmp_path, args, warning):
    proc = subprocess.Popen([sys.executable, "-m", "edgebed.server.cli", "--listen", "0.0.0.0:0",
                             "--http-listen", "none", "--state-dir", str(tmp_path), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "listening on port" in line:
                break
        assert any(warning in line for line in lines), "".join(lines)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_admin_rule_shared_by_control_and_the_dashboard(tmp_path):
    """identity.admin_identity: the one rule admin_check and DashboardAuth apply
    (a non-ASCII secret is a wrong one, not a TypeError from compare_digest)."""
    from edgebed.server.errors import PermissionDenied, Unauthenticated
    from edgebed.server.identity import WRONG_ADMIN, admin_identity

    store = CredentialStore(tmp_path)
    device = store.enroll("dev-1")
    words = dict(what="the thing", missing="say who you are", loopback_only="local only")
    assert admin_identity("tok", "tok", store, loopback=False, **words).via == "token"
    for wrong in ("nope", "clé"):
        with pytest.raises(Unauthenticated, match=WRONG_ADMIN):
            admin_identity(wrong, "tok", store, loopback=True, **words)
    with pytest.raises(PermissionDenied, match="dev-1 holds a device credential: the thing"):
        admin_identity(device, None, store, loopback=True, **words)
    with pytest.raises(Unauthenticated, match="local only"):
        admin_identity(None, None, store, loopback=False, **words)
    assert admin_identity(None, None, store, loopback=True, **words).via == "loopback"
    admin = store.enroll("ops", "admin")
    assert admin_identity(admin, None, store, loopback=False, **words).name == "ops"
    with pytest.raises(Unauthenticated, match="say who you are"):
        admin_identity(None, None, store, loopback=True, **words)
