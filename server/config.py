"""The edge server's settings (``edgebed-server`` parses its options into one).

The bounds are what no client can push the server past, checked before
anything is allocated: a transfer's decoded size and metadata
(``max_transfer_bytes``), concurrent transfers per device and in all, how
long a stream may sit idle or last, how soon a Session must say who it is,
how long a Download may wait for an offer, and how long state nobody
collects is kept.
"""
import math
from dataclasses import dataclass, fields
from typing import Optional

from edgebed.proto.codec import DEFAULT_MAX_TRANSFER_BYTES


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:0"
    token: Optional[str] = None       # shared by every device (any holder is any device)
    tls_cert: Optional[str] = None    # PEM paths; both or neither
    tls_key: Optional[str] = None
    client_ca: Optional[str] = None   # mutual TLS: devices prove their name with a certificate
    state_dir: Optional[str] = None   # enrolled credentials, revoked certificates, runs
    max_transfer_bytes: int = DEFAULT_MAX_TRANSFER_BYTES  # decoded bytes and metadata of one transfer
    max_transfers_per_device: int = 8
    max_transfers: int = 256
    stream_idle_s: float = 60.0       # a transfer stream that sends nothing for this long ends
    stream_total_s: float = 3600.0    # no transfer stream lasts longer
    session_open_s: float = 10.0      # a Session must open (say who it is) within this
    max_wait_s: float = 3600.0        # the longest a Download may wait for its offer
    retain_s: float = 3600.0          # uploads nobody collects, offers, gone devices: then forgotten
    heartbeat_interval_s: float = 2.0
    heartbeat_timeout_s: float = 15.0
    link_ttl_s: float = 600.0         # how long a measured link is trusted

    def __post_init__(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("--tls-cert and --tls-key must be given together")
        if self.client_ca and not self.tls_cert:
            raise ValueError("--client-ca (mutual TLS) needs --tls-cert and --tls-key")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith(("_s", "_bytes")) or f.name.startswith("max_"):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                        not math.isfinite(value) or value < 0:
                    raise ValueError(f"{f.name} must be a finite non-negative number, got {value!r}")
        for name in ("max_transfer_bytes", "max_transfers_per_device", "max_transfers",
                     "stream_idle_s", "stream_total_s", "session_open_s", "retain_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.heartbeat_interval_s < self.heartbeat_timeout_s:
            raise ValueError(
                "need 0 < heartbeat interval < heartbeat timeout, got "
                f"{self.heartbeat_interval_s} and {self.heartbeat_timeout_s}"
            )
