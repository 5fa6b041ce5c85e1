"""gRPC settings both ends share: message limits, keepalive, auth metadata.

Why these numbers:
- Payload chunks are at most 1 MiB (``codec.MAX_CHUNK_BYTES``), so a frame is
  never near the limit; the explicit 8 MiB cap leaves room for headers and
  makes a misbehaving peer fail loudly instead of buffering hundreds of MB.
- Keepalive pings every 20 s with a 10 s timeout notice a dead peer (a board
  unplugged, a NAT that dropped the flow) in under half a minute, while long
  training commands never look dead: the Session stream also carries
  application heartbeats, and the server accepts pings without data.
- The HTTP/2 windows are raised so one 1 MiB frame fits in flight at once,
  which is what lets Upload approach raw-socket goodput on fast links.
"""
from typing import List, Optional, Sequence, Tuple

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
KEEPALIVE_TIME_MS = 20_000
KEEPALIVE_TIMEOUT_MS = 10_000
FLOW_WINDOW_BYTES = 16 * 1024 * 1024

AUTH_HEADER = "authorization"
DEVICE_HEADER = "x-edgebed-device"

_COMMON: List[Tuple[str, int]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.lookahead_bytes", FLOW_WINDOW_BYTES),
    # A fixed 16 MiB window (above) beats BDP probing for short transfers.
    ("grpc.http2.bdp_probe", 0),
]

SERVER_OPTIONS: List[Tuple[str, int]] = _COMMON + [
    # Accept the clients' keepalive pings even while no call carries data.
    ("grpc.http2.min_recv_ping_interval_without_data_ms", KEEPALIVE_TIME_MS // 2),
    ("grpc.http2.max_ping_strikes", 0),
]

CHANNEL_OPTIONS: List[Tuple[str, int]] = _COMMON + [
    # Each agent opens its own connection (no subchannel sharing between
    # emulated devices in one process), so per-device shaping stays separate.
    ("grpc.use_local_subchannel_pool", 1),
]


def auth_metadata(token: Optional[str], device: str = "") -> Sequence[Tuple[str, str]]:
    """Call metadata carrying the shared token and the caller's device name."""
    metadata = []
    if token:
        metadata.append((AUTH_HEADER, f"Bearer {token}"))
    if device:
        metadata.append((DEVICE_HEADER, device))
    return tuple(metadata)


def token_from_metadata(metadata: Sequence[Tuple[str, str]]) -> Optional[str]:
    for key, value in metadata:
        if key == AUTH_HEADER and value.startswith("Bearer "):
            return value[len("Bearer "):]
    return None
