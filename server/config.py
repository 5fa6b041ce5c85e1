"""The edge server's settings (``edgebed-server`` parses its options into one)."""
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:0"
    token: Optional[str] = None
    tls_cert: Optional[str] = None  # PEM paths; both or neither
    tls_key: Optional[str] = None
    max_transfer_bytes: int = 2 * 1024 ** 3
    heartbeat_interval_s: float = 2.0
    heartbeat_timeout_s: float = 15.0
    link_ttl_s: float = 600.0        # how long a measured link is trusted

    def __post_init__(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("--tls-cert and --tls-key must be given together")
        if self.max_transfer_bytes <= 0:
            raise ValueError(f"max_transfer_bytes must be positive, got {self.max_transfer_bytes}")
        if not self.link_ttl_s >= 0:
            raise ValueError(f"link_ttl_s must not be negative, got {self.link_ttl_s}")
        if not 0 < self.heartbeat_interval_s < self.heartbeat_timeout_s:
            raise ValueError(
                "need 0 < heartbeat interval < heartbeat timeout, got "
                f"{self.heartbeat_interval_s} and {self.heartbeat_timeout_s}"
            )
