"""Who is calling: every device proves its name, every admin its role.

Three ways to prove an identity, strongest first:

- **a client certificate** (mutual TLS, ``server/ca.py`` makes the fleet's
  CA and the certificates): the certificate's common name is the device's
  name; a revoked certificate (its serial in the state directory's
  ``revoked.json``) is refused;
- **an enrolled credential** (``edgebed-server enroll NAME``): a random
  secret shown once, of which the server keeps only a SHA-256 under the
  state directory (``credentials.json``), bound to a name and a role
  (``device`` or ``admin``);
- the legacy **shared token** (``--token``): whoever holds it may act as any
  device; it identifies no one, so the registry refuses to let it take over
  a live device's name.

On every device-facing RPC the name in the request must be the caller's own
(``check_name``); a credential of another name gets PERMISSION_DENIED.
"""
import contextvars
import hashlib
import json
import logging
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from edgebed.argtypes import is_loopback_host
from edgebed.proto.channel import token_from_metadata
from edgebed.results.jsonable import read_json, write_json_atomic
from edgebed.server.errors import PermissionDenied, RequestError, Unauthenticated

logger = logging.getLogger(__name__)

ROLES = ("device", "admin")
CREDENTIALS_FILE = "credentials.json"
REVOKED_FILE = "revoked.json"
TOKEN_PREFIX = "ebc1_"  # an enrolled credential, as opposed to a shared token


@dataclass(frozen=True)
class Identity:
    """A proven caller. ``name`` is None when the proof names no one (a shared
    token, or an unauthenticated server)."""

    name: Optional[str]
    role: str
    via: str          # "certificate", "credential", "token", "none"

    @property
    def proven(self) -> bool:
        return self.name is not None


ANONYMOUS = Identity(None, "device", "none")
SHARED_TOKEN = Identity(None, "device", "token")

#: The caller of the RPC being served (set by the guard interceptor).
CALLER: "contextvars.ContextVar[Identity]" = contextvars.ContextVar("edgebed_caller",
                                                                   default=ANONYMOUS)


def check_name(claimed: str, what: str) -> None:
    """``claimed`` (a device name in a request) must be the caller's own."""
    caller = CALLER.get()
    if caller.role == "admin":
        raise PermissionDenied(f"an admin credential cannot act as a device ({what})")
    if caller.proven and claimed != caller.name:
        raise PermissionDenied(f"{caller.name} may not act as {printable(claimed)} ({what})")


def printable(text: str, limit: int = 120) -> str:
    """A client's string as it may go into a log line or a status message:
    escaped (no newline can forge a line) and cut to ``limit`` characters."""
    shown = repr(text[:limit])[1:-1]
    return shown + (f"...(+{len(text) - limit} chars)" if len(text) > limit else "")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_device_name(name: str) -> str:
    if not name or len(name) > 128 or any(c.isspace() or not c.isprintable() for c in name):
        raise RequestError(f"device name {printable(name)!r} must be 1-128 printable characters "
                           "without spaces")
    return name


class CredentialStore:
    """Enrolled credentials (hashes only) and revoked certificate serials,
    under a state directory; re-read when another process (``enroll``,
    ``ca revoke``) changes them."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self._lock = threading.Lock()
        self._stamp: Dict[str, float] = {}
        self._by_digest: Dict[str, Identity] = {}
        self._revoked: Dict[str, str] = {}

    # ------------------------------------------------------------ files
    def _read(self, name: str) -> Optional[dict]:
        path = self.dir / name
        try:
            stamp = path.stat().st_mtime
        except FileNotFoundError:
            return {}
        if self._stamp.get(name) == stamp:
            return None  # unchanged
        self._stamp[name] = stamp
        return json.loads(path.read_text())

    def _refresh(self) -> None:
        with self._lock:
            creds = self._read(CREDENTIALS_FILE)
            if creds is not None:
                self._by_digest = {entry["sha256"]: Identity(name, entry["role"], "credential")
                                   for name, entry in creds.items()}
            revoked = self._read(REVOKED_FILE)
            if revoked is not None:
                self._revoked = dict(revoked)

    def _write(self, name: str, data: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.dir / name, data, mode=0o600)

    # ------------------------------------------------------------ credentials
    def enrolled(self, role: str = "device") -> bool:
        """Whether any credential of ``role`` is enrolled (then callers must present one)."""
        self._refresh()
        return any(identity.role == role for identity in self._by_digest.values())

    def enroll(self, name: str, role: str = "device") -> str:
        """A new credential for ``name`` (replacing any earlier one); the
        secret is returned once and only its hash is kept."""
        check_device_name(name)
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        creds = read_json(self.dir / CREDENTIALS_FILE, {})
        creds[name] = {"role": role, "sha256": _digest(token), "enrolled_unix_s": time.time()}
        self._write(CREDENTIALS_FILE, creds)
        return token

    def identify(self, token: str) -> Optional[Identity]:
        self._refresh()
        return self._by_digest.get(_digest(token))

    # ------------------------------------------------------------ certificates
    def revoke_serial(self, serial: int, name: str) -> None:
        revoked = read_json(self.dir / REVOKED_FILE, {})
        revoked[str(serial)] = name
        self._write(REVOKED_FILE, revoked)

    def revoked(self, serial: int) -> bool:
        self._refresh()
        return str(serial) in self._revoked


# ---------------------------------------------------------------- the checks

def peer_is_loopback(peer: str) -> bool:
    """Whether a gRPC peer string (``ipv4:127.0.0.1:5000``, ``ipv6:[::1]:5000``,
    its percent-encoded form, ``unix:/path``) is a caller on this machine."""
    kind, _, address = (peer or "").partition(":")
    if kind == "unix":
        return True
    if kind not in ("ipv4", "ipv6"):
        return False
    host, sep, _ = urllib.parse.unquote(address).rpartition(":")
    return bool(sep) and is_loopback_host(host)


_serials: Dict[bytes, int] = {}


def certificate_serial(pem: bytes) -> int:
    if pem not in _serials:
        from cryptography import x509  # server extra; only a TLS server gets here
        _serials[pem] = x509.load_pem_x509_certificate(pem).serial_number
    return _serials[pem]


def _certificate(context, store: Optional[CredentialStore]) -> Optional[Identity]:
    auth = context.auth_context() or {}
    names = auth.get("x509_common_name")
    if not names:
        return None
    serial = certificate_serial(auth["x509_pem_cert"][0])
    name = names[0].decode("utf-8", "replace")
    if store is not None and store.revoked(serial):
        raise Unauthenticated(f"the certificate of {printable(name)} (serial {serial}) is revoked")
    return Identity(name, "device", "certificate")


def devices_must_authenticate(config, store: Optional[CredentialStore]) -> bool:
    """Whether devices must prove something: the shared token, a client
    certificate (mutual TLS) or an enrolled device credential."""
    return bool(config.token or config.client_ca or (store is not None and
                                                     store.enrolled("device")))


def device_check(config, store: Optional[CredentialStore]):
    """Who calls the device-facing service: a certificate's name, an enrolled
    credential's name, the shared token (no name), or nobody when the server
    asks for nothing."""

    async def check(context) -> Identity:
        identity = _certificate(context, store)
        if identity is not None:
            return identity
        token = token_from_metadata(context.invocation_metadata() or ())
        if token is not None:
            identity = store.identify(token) if store is not None else None
            if identity is not None:
                return identity
            if config.token and secrets.compare_digest(token, config.token):
                return SHARED_TOKEN
            raise Unauthenticated("wrong token, or an unknown or replaced credential")
        if devices_must_authenticate(config, store):
            raise Unauthenticated("missing credential: this server needs an enrolled "
                                  "credential (authorization: Bearer ...), its shared token "
                                  "or a client certificate")
        return ANONYMOUS

    return check


WRONG_ADMIN = "wrong admin token or credential"


def has_admins(admin_token: Optional[str], store: Optional[CredentialStore]) -> bool:
    """Whether admins must prove themselves: an admin token is configured or
    an admin credential is enrolled."""
    return bool(admin_token) or (store is not None and store.enrolled("admin"))


def admin_identity(secret: Optional[str], admin_token: Optional[str],
                   store: Optional[CredentialStore], *, loopback: bool, what: str,
                   missing: str, loopback_only: str) -> Identity:
    """The one admin rule, for the Control service and the dashboard: the
    caller presenting ``secret`` (None: nothing presented) from a loopback
    address or not. An admin proves it with the admin token or an enrolled
    admin credential; a device credential is PermissionDenied (``what``
    needs an admin one); a wrong secret is Unauthenticated (WRONG_ADMIN);
    nothing presented is Unauthenticated (``missing``) when admins are
    configured, else allowed from loopback only (``loopback_only``)."""
    if secret is not None:
        if admin_token and secrets.compare_digest(secret.encode("utf-8", "surrogatepass"),
                                                  admin_token.encode("utf-8", "surrogatepass")):
            return Identity("admin", "admin", "token")
        identity = store.identify(secret) if store is not None else None
        if identity is not None and identity.role == "admin":
            return identity
        if identity is not None:
            raise PermissionDenied(f"{identity.name} holds a device credential: {what} needs an "
                                   "admin one")
        raise Unauthenticated(WRONG_ADMIN)
    if has_admins(admin_token, store):
        raise Unauthenticated(missing)
    if not loopback:
        raise Unauthenticated(loopback_only)
    return Identity("admin", "admin", "loopback")


def admin_check(admin_token: Optional[str], store: Optional[CredentialStore]):
    """Who calls the Control service: an admin (the admin token, or an
    enrolled admin credential); without either configured, loopback only."""

    async def check(context) -> Identity:
        return admin_identity(
            token_from_metadata(context.invocation_metadata() or ()), admin_token, store,
            loopback=peer_is_loopback(context.peer()), what="the Control service",
            missing="missing admin credential: the Control service needs the server's "
                    "--admin-token or an enrolled admin credential",
            loopback_only="this server has no admin credential: its Control service answers "
                          "loopback callers only")

    return check
