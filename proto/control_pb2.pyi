from edgebed.proto import edge_pb2 as _edge_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitRequest(_message.Message):
    __slots__ = ("suite", "options_json", "devices", "selector", "count", "command")
    SUITE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_JSON_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    suite: str
    options_json: str
    devices: _containers.RepeatedScalarFieldContainer[str]
    selector: str
    count: int
    command: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, suite: _Optional[str] = ..., options_json: _Optional[str] = ..., devices: _Optional[_Iterable[str]] = ..., selector: _Optional[str] = ..., count: _Optional[int] = ..., command: _Optional[_Iterable[str]] = ...) -> None: ...

class RunRef(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RunInfo(_message.Message):
    __slots__ = ("run_id", "suite", "state", "devices", "queue_position", "progress", "progress_text", "error", "submitted_unix_s", "started_unix_s", "ended_unix_s", "options_json")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SUITE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_TEXT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    ENDED_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_JSON_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    suite: str
    state: str
    devices: _containers.RepeatedScalarFieldContainer[str]
    queue_position: int
    progress: float
    progress_text: str
    error: str
    submitted_unix_s: float
    started_unix_s: float
    ended_unix_s: float
    options_json: str
    def __init__(self, run_id: _Optional[str] = ..., suite: _Optional[str] = ..., state: _Optional[str] = ..., devices: _Optional[_Iterable[str]] = ..., queue_position: _Optional[int] = ..., progress: _Optional[float] = ..., progress_text: _Optional[str] = ..., error: _Optional[str] = ..., submitted_unix_s: _Optional[float] = ..., started_unix_s: _Optional[float] = ..., ended_unix_s: _Optional[float] = ..., options_json: _Optional[str] = ...) -> None: ...

class RunList(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[RunInfo]
    def __init__(self, runs: _Optional[_Iterable[_Union[RunInfo, _Mapping]]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("run_id", "from_seq")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQ_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    from_seq: int
    def __init__(self, run_id: _Optional[str] = ..., from_seq: _Optional[int] = ...) -> None: ...

class RunEvent(_message.Message):
    __slots__ = ("seq", "state", "log", "span_json")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    SPAN_JSON_FIELD_NUMBER: _ClassVar[int]
    seq: int
    state: RunInfo
    log: str
    span_json: str
    def __init__(self, seq: _Optional[int] = ..., state: _Optional[_Union[RunInfo, _Mapping]] = ..., log: _Optional[str] = ..., span_json: _Optional[str] = ...) -> None: ...

class RunFile(_message.Message):
    __slots__ = ("path", "data", "last")
    PATH_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    path: str
    data: bytes
    last: bool
    def __init__(self, path: _Optional[str] = ..., data: _Optional[bytes] = ..., last: bool = ...) -> None: ...

class FleetRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LinkMeasurement(_message.Message):
    __slots__ = ("up_capacity_bps", "down_capacity_bps", "rtt_ms", "measured_unix_s", "provenance")
    UP_CAPACITY_BPS_FIELD_NUMBER: _ClassVar[int]
    DOWN_CAPACITY_BPS_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    MEASURED_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    up_capacity_bps: float
    down_capacity_bps: float
    rtt_ms: float
    measured_unix_s: float
    provenance: str
    def __init__(self, up_capacity_bps: _Optional[float] = ..., down_capacity_bps: _Optional[float] = ..., rtt_ms: _Optional[float] = ..., measured_unix_s: _Optional[float] = ..., provenance: _Optional[str] = ...) -> None: ...

class DeviceInfo(_message.Message):
    __slots__ = ("name", "profile", "labels", "link", "state", "run_id", "heartbeat_age_s", "disconnect_reason")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LINK_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_AGE_S_FIELD_NUMBER: _ClassVar[int]
    DISCONNECT_REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    profile: _edge_pb2.CapabilityProfile
    labels: _containers.ScalarMap[str, str]
    link: LinkMeasurement
    state: str
    run_id: str
    heartbeat_age_s: float
    disconnect_reason: str
    def __init__(self, name: _Optional[str] = ..., profile: _Optional[_Union[_edge_pb2.CapabilityProfile, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., link: _Optional[_Union[LinkMeasurement, _Mapping]] = ..., state: _Optional[str] = ..., run_id: _Optional[str] = ..., heartbeat_age_s: _Optional[float] = ..., disconnect_reason: _Optional[str] = ...) -> None: ...

class FleetInfo(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[DeviceInfo]
    def __init__(self, devices: _Optional[_Iterable[_Union[DeviceInfo, _Mapping]]] = ...) -> None: ...
