from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LinkProfile(_message.Message):
    __slots__ = ("uplink_bps", "downlink_bps", "distance_m", "tx_power_w", "bandwidth_hz")
    UPLINK_BPS_FIELD_NUMBER: _ClassVar[int]
    DOWNLINK_BPS_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_M_FIELD_NUMBER: _ClassVar[int]
    TX_POWER_W_FIELD_NUMBER: _ClassVar[int]
    BANDWIDTH_HZ_FIELD_NUMBER: _ClassVar[int]
    uplink_bps: float
    downlink_bps: float
    distance_m: float
    tx_power_w: float
    bandwidth_hz: float
    def __init__(self, uplink_bps: _Optional[float] = ..., downlink_bps: _Optional[float] = ..., distance_m: _Optional[float] = ..., tx_power_w: _Optional[float] = ..., bandwidth_hz: _Optional[float] = ...) -> None: ...

class CapabilityProfile(_message.Message):
    __slots__ = ("cpu_model", "cpu_cores", "cpu_freq_mhz", "ram_bytes", "accelerator", "torch_version", "python_version", "platform", "matmul_gflops", "conv_gflops", "power_backend", "cpu_quota", "link", "hostname", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    CPU_CORES_FIELD_NUMBER: _ClassVar[int]
    CPU_FREQ_MHZ_FIELD_NUMBER: _ClassVar[int]
    RAM_BYTES_FIELD_NUMBER: _ClassVar[int]
    ACCELERATOR_FIELD_NUMBER: _ClassVar[int]
    TORCH_VERSION_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    MATMUL_GFLOPS_FIELD_NUMBER: _ClassVar[int]
    CONV_GFLOPS_FIELD_NUMBER: _ClassVar[int]
    POWER_BACKEND_FIELD_NUMBER: _ClassVar[int]
    CPU_QUOTA_FIELD_NUMBER: _ClassVar[int]
    LINK_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    cpu_model: str
    cpu_cores: int
    cpu_freq_mhz: float
    ram_bytes: int
    accelerator: str
    torch_version: str
    python_version: str
    platform: str
    matmul_gflops: float
    conv_gflops: float
    power_backend: str
    cpu_quota: float
    link: LinkProfile
    hostname: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, cpu_model: _Optional[str] = ..., cpu_cores: _Optional[int] = ..., cpu_freq_mhz: _Optional[float] = ..., ram_bytes: _Optional[int] = ..., accelerator: _Optional[str] = ..., torch_version: _Optional[str] = ..., python_version: _Optional[str] = ..., platform: _Optional[str] = ..., matmul_gflops: _Optional[float] = ..., conv_gflops: _Optional[float] = ..., power_backend: _Optional[str] = ..., cpu_quota: _Optional[float] = ..., link: _Optional[_Union[LinkProfile, _Mapping]] = ..., hostname: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("name", "profile", "agent_version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    profile: CapabilityProfile
    agent_version: str
    def __init__(self, name: _Optional[str] = ..., profile: _Optional[_Union[CapabilityProfile, _Mapping]] = ..., agent_version: _Optional[str] = ...) -> None: ...

class RegisterReply(_message.Message):
    __slots__ = ("device_id", "session_key", "heartbeat_interval_s", "heartbeat_timeout_s")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    session_key: str
    heartbeat_interval_s: float
    heartbeat_timeout_s: float
    def __init__(self, device_id: _Optional[str] = ..., session_key: _Optional[str] = ..., heartbeat_interval_s: _Optional[float] = ..., heartbeat_timeout_s: _Optional[float] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("command_id", "kind", "args_json", "timeout_s")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    kind: str
    args_json: str
    timeout_s: float
    def __init__(self, command_id: _Optional[str] = ..., kind: _Optional[str] = ..., args_json: _Optional[str] = ..., timeout_s: _Optional[float] = ...) -> None: ...

class CommandResult(_message.Message):
    __slots__ = ("command_id", "ok", "result_json", "error", "error_type")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    ok: bool
    result_json: str
    error: str
    error_type: str
    def __init__(self, command_id: _Optional[str] = ..., ok: bool = ..., result_json: _Optional[str] = ..., error: _Optional[str] = ..., error_type: _Optional[str] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("seq", "sent_unix_s")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SENT_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    seq: int
    sent_unix_s: float
    def __init__(self, seq: _Optional[int] = ..., sent_unix_s: _Optional[float] = ...) -> None: ...

class Span(_message.Message):
    __slots__ = ("run_id", "round", "device", "phase", "start_s", "end_s", "start_unix_s", "bytes", "energy_j", "power_backend", "provenance", "low_confidence", "extra_json")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    START_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    ENERGY_J_FIELD_NUMBER: _ClassVar[int]
    POWER_BACKEND_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    LOW_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    EXTRA_JSON_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    round: int
    device: str
    phase: str
    start_s: float
    end_s: float
    start_unix_s: float
    bytes: int
    energy_j: float
    power_backend: str
    provenance: str
    low_confidence: bool
    extra_json: str
    def __init__(self, run_id: _Optional[str] = ..., round: _Optional[int] = ..., device: _Optional[str] = ..., phase: _Optional[str] = ..., start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., start_unix_s: _Optional[float] = ..., bytes: _Optional[int] = ..., energy_j: _Optional[float] = ..., power_backend: _Optional[str] = ..., provenance: _Optional[str] = ..., low_confidence: bool = ..., extra_json: _Optional[str] = ...) -> None: ...

class SessionOpen(_message.Message):
    __slots__ = ("device_id", "session_key")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_KEY_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    session_key: str
    def __init__(self, device_id: _Optional[str] = ..., session_key: _Optional[str] = ...) -> None: ...

class SessionClose(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class DeviceMessage(_message.Message):
    __slots__ = ("open", "result", "heartbeat", "span", "close")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    SPAN_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    open: SessionOpen
    result: CommandResult
    heartbeat: Heartbeat
    span: Span
    close: SessionClose
    def __init__(self, open: _Optional[_Union[SessionOpen, _Mapping]] = ..., result: _Optional[_Union[CommandResult, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., span: _Optional[_Union[Span, _Mapping]] = ..., close: _Optional[_Union[SessionClose, _Mapping]] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("command", "heartbeat_ack")
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_ACK_FIELD_NUMBER: _ClassVar[int]
    command: Command
    heartbeat_ack: Heartbeat
    def __init__(self, command: _Optional[_Union[Command, _Mapping]] = ..., heartbeat_ack: _Optional[_Union[Heartbeat, _Mapping]] = ...) -> None: ...

class Quantization(_message.Message):
    __slots__ = ("scheme", "bits", "scale", "offset", "source_dtype")
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    BITS_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SOURCE_DTYPE_FIELD_NUMBER: _ClassVar[int]
    scheme: str
    bits: int
    scale: float
    offset: float
    source_dtype: str
    def __init__(self, scheme: _Optional[str] = ..., bits: _Optional[int] = ..., scale: _Optional[float] = ..., offset: _Optional[float] = ..., source_dtype: _Optional[str] = ...) -> None: ...

class TensorHeader(_message.Message):
    __slots__ = ("name", "dtype", "shape", "payload_bytes", "crc32", "quant")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    CRC32_FIELD_NUMBER: _ClassVar[int]
    QUANT_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    payload_bytes: int
    crc32: int
    quant: Quantization
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., payload_bytes: _Optional[int] = ..., crc32: _Optional[int] = ..., quant: _Optional[_Union[Quantization, _Mapping]] = ...) -> None: ...

class TransferHeader(_message.Message):
    __slots__ = ("device_id", "key", "num_tensors", "total_bytes", "rate_bps", "meta")
    class MetaEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    NUM_TENSORS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    RATE_BPS_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    key: str
    num_tensors: int
    total_bytes: int
    rate_bps: float
    meta: _containers.ScalarMap[str, str]
    def __init__(self, device_id: _Optional[str] = ..., key: _Optional[str] = ..., num_tensors: _Optional[int] = ..., total_bytes: _Optional[int] = ..., rate_bps: _Optional[float] = ..., meta: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TransferFrame(_message.Message):
    __slots__ = ("seq", "transfer", "tensor", "data")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    seq: int
    transfer: TransferHeader
    tensor: TensorHeader
    data: bytes
    def __init__(self, seq: _Optional[int] = ..., transfer: _Optional[_Union[TransferHeader, _Mapping]] = ..., tensor: _Optional[_Union[TensorHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class TransferStats(_message.Message):
    __slots__ = ("transfer_id", "bytes", "seconds", "rate_bps", "num_tensors")
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    RATE_BPS_FIELD_NUMBER: _ClassVar[int]
    NUM_TENSORS_FIELD_NUMBER: _ClassVar[int]
    transfer_id: str
    bytes: int
    seconds: float
    rate_bps: float
    num_tensors: int
    def __init__(self, transfer_id: _Optional[str] = ..., bytes: _Optional[int] = ..., seconds: _Optional[float] = ..., rate_bps: _Optional[float] = ..., num_tensors: _Optional[int] = ...) -> None: ...

class DownloadRequest(_message.Message):
    __slots__ = ("device_id", "key", "rate_bps", "wait_s")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    RATE_BPS_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    key: str
    rate_bps: float
    wait_s: float
    def __init__(self, device_id: _Optional[str] = ..., key: _Optional[str] = ..., rate_bps: _Optional[float] = ..., wait_s: _Optional[float] = ...) -> None: ...
