"""Every command's contract: strict round trips, unknown and missing keys
refused by name, and the mismatches the old string-and-dict commands had."""
import dataclasses
import importlib
import pathlib
import typing

import pytest

from edgebed.proto.contracts.base import CommandSpec, ContractError, MetaRecord, RunKeys

CONTRACTS = sorted(p.stem for p in (pathlib.Path(__file__).resolve().parents[1] / "proto" /
                                    "contracts").glob("*.py") if p.stem not in ("__init__", "base"))
# Values that satisfy the records' own checks.
SAMPLES = {"partition": "iid", "mode": "gradient", "index": 0, "num_devices": 2, "lam": 4,
           "batch": 8, "n": 2, "size_bytes": 64, "scheme": "uniform", "bits": 4,
           "data_bytes": 50_000}


def specs():
    for name in CONTRACTS:
        module = importlib.import_module(f"edgebed.proto.contracts.{name}")
        for value in vars(module).values():
            if isinstance(value, CommandSpec):
                yield pytest.param(value, id=value.kind)


def sample(tp, field=""):
    if field in SAMPLES:
        return SAMPLES[field]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        return sample([a for a in args if a is not type(None)][0], field)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: sample(hints[f.name], f.name) for f in dataclasses.fields(tp)})
    if origin in (list, typing.List):
        return [sample(args[0])]
    if origin in (tuple, typing.Tuple):
        return (sample(args[0]),)
    if origin in (dict, typing.Dict):
        return {"k": sample(args[1])}
    return {bool: True, int: 3, float: 0.5, str: "x"}.get(tp, None)


def test_every_workload_has_a_contract():
    from edgebed.workloads import WORKLOADS
    assert {w.name for w in WORKLOADS} <= set(CONTRACTS)


@pytest.mark.parametrize("spec", specs())
def test_requests_and_results_round_trip(spec):
    for record_type in (spec.request, spec.result):
        record = sample(record_type)
        assert record_type.from_args(record.to_args()) == record
    assert spec.decode_request(spec.encode_request(sample(spec.request))) == sample(spec.request)


@pytest.mark.parametrize("spec", specs())
def test_an_unknown_key_is_refused_by_name(spec):
    args = sample(spec.request).to_args()
    args["rate_bps"] = 1e6  # the old spelling of a rate
    with pytest.raises(ContractError, match=f"{spec.kind}: unknown key 'rate_bps'"):
        spec.decode_request(args)


@pytest.mark.parametrize("spec", specs())
def test_every_missing_required_key_is_refused_by_name(spec):
    args = sample(spec.request).to_args()
    required = [f.name for f in dataclasses.fields(spec.request)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    for key in required:
        partial = {k: v for k, v in args.items() if k != key}
        with pytest.raises(ContractError, match=f"{spec.kind}: missing key '{key}'"):
            spec.decode_request(partial)


def test_a_wrong_type_is_refused_naming_the_key():
    from edgebed.proto.contracts import feel
    args = sample(feel.RoundIns).to_args()
    args["batch"] = "eight"
    with pytest.raises(ContractError, match=r"feel.round.batch must be an integer"):
        feel.ROUND.decode_request(args)
    args["batch"] = True
    with pytest.raises(ContractError, match="batch"):
        feel.ROUND.decode_request(args)


# ---------------------------------------------------------------- the old mismatches

def _required(record_type, field):
    f = {f.name: f for f in dataclasses.fields(record_type)}[field]
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


@pytest.mark.parametrize("module, record, field", [
    # The device waited 600 s for the edge CNN while the server allowed 1800 s.
    ("tl", "AwaitModelIns", "wait_s"),
    # The split warm-up defaulted to 1, 2 and 3 at different ends.
    ("split", "RunIns", "warmup"),
    ("split", "ProfileIns", "warmup"),
    ("split", "ProfileIns", "gap_s"),
    ("split", "RunIns", "gap_s"),
    # The TL partition defaulted to "iid" on the device, "noniid" on the server.
    ("tl", "PrepareIns", "partition"),
    ("feel", "SetupIns", "partition"),
    # A misspelt rate fell back to the link's default: every upload states its rate.
    ("tl", "EncodeUploadIns", "uplink_bps"),
    ("feel", "RoundIns", "uplink_bps"),
    ("split", "RunIns", "uplink_bps"),
    ("runtime", "UploadIns", "uplink_bps"),
])
def test_the_orchestrator_states_what_the_ends_used_to_default_differently(module, record, field):
    """No default on the device side: the server's config is the one source."""
    record_type = getattr(importlib.import_module(f"edgebed.proto.contracts.{module}"), record)
    assert _required(record_type, field)


def test_the_server_config_is_what_the_device_is_told():
    from edgebed.server.workloads.split.orchestrator import SplitConfig
    from edgebed.server.workloads.tl.orchestrator import TLConfig
    assert TLConfig().partition == "noniid"  # the one default of the TL partition
    assert SplitConfig().warmup == 2


@pytest.mark.parametrize("name", CONTRACTS)
def test_every_key_is_run_scoped(name):
    """TL's keys used to be global (tl/latents/...): two runs wiped each other."""
    module = importlib.import_module(f"edgebed.proto.contracts.{name}")
    keys_types = [v for v in vars(module).values()
                  if isinstance(v, type) and issubclass(v, RunKeys) and v is not RunKeys]
    assert keys_types, f"{name} has no run-scoped key builder"
    for keys_type in keys_types:
        a, b = keys_type("run-a"), keys_type("run-b")
        assert a.prefix == f"{name}/run-a/"
        for attr in dir(keys_type):
            if attr.startswith("_") or attr in ("prefix", "key", "workload", "run_id"):
                continue
            member = getattr(a, attr)
            key_a = member if isinstance(member, str) else member(*(["t"] * _arity(member)))
            key_b = getattr(b, attr) if isinstance(member, str) else \
                getattr(b, attr)(*(["t"] * _arity(member)))
            assert key_a.startswith(a.prefix)
            assert key_a != key_b


def _arity(method):
    import inspect
    return len(inspect.signature(method).parameters)


def test_meta_records_travel_as_strings_and_come_back():
    from edgebed.proto.contracts import feel, split
    meta = split.InferMeta(model="lenet", split=4, seed=0, run_id="r", tag="t", index=-1,
                           input_size=None, slots=(1, 2, 2))
    text = meta.to_meta()
    assert all(isinstance(v, str) for v in text.values())
    assert "input_size" not in text
    assert split.InferMeta.from_meta({**text, "handler": "split"}, ignore=("handler",)) == meta
    assert feel.AggregateMeta.from_meta(feel.AggregateMeta(lr=-1.0).to_meta()).lr == -1.0
    with pytest.raises(ContractError, match="'round'"):
        feel.GradMeta.from_meta({"round": "one", "batch": "8"})
    assert issubclass(split.InferMeta, MetaRecord)
