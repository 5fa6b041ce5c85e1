"""Device side of the placement workload (Zhang et al., "Deep Reinforcement Learning Based
Resource Management for DNN Inference in Industrial IoT", Sections III-A to III-C).

An agent is a gateway (IGW) unless it was started with ``--label role=cloud``, which makes it
the cloud model store (CCaS). Any agent serves both roles' commands; the server sends each
only what its role does.

Cloud store:

- ``placement.store``: train the light and heavy DNN of every task type once (cached on this
  host's disk) and measure them (``models.placement.measure``);
- ``placement.push``: upload models' bytes to the edge cache, each paced at R^c.

Gateway:

- ``placement.configure``: empty the model cache (capacity S^l), load the held-out digits its
  task sources draw from, time every model structure on a reference task at full speed;
- ``placement.slot``: one slot. Every task runs in its own thread from the slot's start:

  1. its source generates the task (D real bytes: digits of its view, the noise model when
     theta = 1) and sends them through a local socket paced at alpha^l B gamma (the
     device -> IGW radio hop, eq. (2)-(3));
  2. on the IGW (m = 1): the model comes from the cache, or from the download the decision
     placed this slot (at R^e, after the edge got it from the cloud when it had to); the task
     then runs at its share beta^l of this node (time-sliced, ``models.placement.shares``).
     d of eq. (7) is measured from the slot's start to the last prediction; a task whose
     deadline passes while it waits or computes is stopped and counts as late;
  3. on the ECoS (m = 0): its bytes go on to the edge server at alpha^e B^e gamma^e
     (eq. (4)); the server times the rest.

  After the tasks, Step 4 of DCPU: the cache keeps the models the server says omega kept.
"""
import concurrent.futures
import logging
import platform
import socket
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import grpc
import numpy as np
import torch

from edgebed.device.handlers import HandlerContext, HandlerRegistry, span_summary
from edgebed.models.datasets import load_dataset
from edgebed.models.placement import tasks as task_inputs
from edgebed.models.placement.cache import (
    CacheRefused,
    ModelCache,
    bytes_tensor,
    model_bytes,
    tensor_bytes,
)
from edgebed.models.placement.shares import ShareScheduler, build_net, time_model
from edgebed.proto.contracts import placement as pl
from edgebed.proto.shaping import MIN_CHUNK_BYTES, pace_frames

logger = logging.getLogger(__name__)
registry = HandlerRegistry()

STATE = "placement"


# ---------------------------------------------------------------- cloud store

@registry.command(pl.STORE)
def store(ctx: HandlerContext, req: pl.StoreIns) -> pl.StoreRes:
    """Train or load the zoo, measure every model, keep their bytes for pushes."""
    from dataclasses import replace

    from edgebed.models.placement import measure, zoo

    if req.preset not in zoo.PRESETS:
        raise ValueError(f"unknown model preset {req.preset!r}; one of {sorted(zoo.PRESETS)}")
    config = replace(zoo.PRESETS[req.preset], dataset=req.dataset, data_root=req.data_root,
                     seed=req.seed)
    with ctx.phase("placement_store", run_id=req.run_id):
        trained = zoo.load_or_train(config)
        measured = measure.measure_catalogue(trained, noise_draws=req.noise_draws,
                                             repeats=req.repeats, seed=req.seed)
    blobs, infos = {}, []
    for m in measured:
        net = trained.model(m.task_type, m.level)
        blobs[m.key] = model_bytes(net)
        cfg = net.config
        infos.append(pl.ModelInfo(
            key=m.key, task_type=m.task_type, level=m.level, depth=cfg.depth, width=cfg.width,
            hidden=cfg.hidden, pooled=cfg.pooled, classes=int(net.head[-1].out_features),
            size_bytes=len(blobs[m.key]), acc_clean=m.acc_clean, acc_noisy=m.acc_noisy,
            infer_s=m.infer_s))
    ctx.state[STATE + ".store"] = blobs
    return pl.StoreRes(models=infos, trained=trained.trained, train_s=trained.train_s,
                       test_images=int(trained.test_labels.numel()),
                       test_fraction=config.test_fraction, max_samples=config.max_samples,
                       host=platform.node() or "this-host")


@registry.command(pl.PUSH)
def push(ctx: HandlerContext, req: pl.PushIns) -> pl.PushRes:
    """Upload one model's bytes to the edge at R^c."""
    blobs = ctx.state.get(STATE + ".store")
    if blobs is None:
        raise ValueError("placement.store must run before placement.push")
    if req.model not in blobs:
        raise ValueError(f"unknown model {req.model!r}; the store has {sorted(blobs)}")
    blob = blobs[req.model]
    meta = pl.ModelMeta(model=req.model, size_bytes=len(blob)).to_meta()
    with ctx.phase("placement_push", run_id=req.run_id, rate_bps=req.uplink_bps) as up:
        stats = ctx.transfers.upload(req.key, {"bytes": bytes_tensor(blob)},
                                     rate_bps=req.uplink_bps, meta=meta)
        up.bytes = stats.bytes
    return pl.PushRes(upload=span_summary(up), bytes=stats.bytes, rate_bps=stats.rate_bps)


# ---------------------------------------------------------------- gateway

@dataclass
class Gateway:
    models: Dict[str, pl.ModelInfo]  # the catalogue
    cache: ModelCache
    scheduler: ShareScheduler
    images: torch.Tensor      # held-out digits, N x 1 x 28 x 28 in [0, 1]
    labels: torch.Tensor


def _gateway(ctx: HandlerContext) -> Gateway:
    if STATE not in ctx.state:
        raise ValueError("placement.configure must run before placement.slot")
    return ctx.state[STATE]


@registry.command(pl.CONFIGURE)
def configure(ctx: HandlerContext, req: pl.ConfigureIns) -> pl.ConfigureRes:
    """An empty cache of S^l bytes, the sources' digits, and Q measured here."""
    old = ctx.state.pop(STATE, None)
    if old is not None:
        old.scheduler.close()
    structures = {m.key: m for m in req.models}

    def structure(key: str) -> torch.nn.Module:
        m = structures[key]
        return build_net(m.depth, m.width, m.hidden, m.pooled, m.classes)

    images, labels = load_dataset(req.dataset, req.data_root, max_samples=req.max_samples,
                                  seed=req.seed)
    _, (test_x, test_y) = task_inputs.split_data(images, labels, req.test_fraction, req.seed)
    times = {}
    with ctx.phase("placement_profile", run_id=req.run_id):
        for m in req.models:
            kind = task_inputs.task_type(m.task_type)
            n = task_inputs.images_per_task(task_inputs.REFERENCE_TASK_BYTES)
            x = kind.transform(test_x[:n])
            # Inference time does not depend on the weights: an untrained net of the
            # model's structure is timed, so no model is placed before the policy decides.
            times[m.key] = time_model(structure(m.key), x, repeats=req.repeats)
    ctx.state[STATE] = Gateway(structures, ModelCache(req.cache_bytes, structure, name=ctx.name),
                               ShareScheduler(req.period_s, name=f"{ctx.name}-shares"),
                               test_x, test_y)
    return pl.ConfigureRes(infer_s=times, test_images=int(test_y.numel()),
                           cache_bytes=req.cache_bytes, host=platform.node() or "this-host")


class _Frame:
    """A chunk of a source's bytes, as ``pace_frames`` counts them."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def source_hop(payload: bytes, rate_bps: float) -> Tuple[bytes, float]:
    """``payload`` through a local socket pair paced at ``rate_bps`` (the radio hop from an
    IIoT device to its gateway); returns the bytes received and the seconds it took."""
    sender, receiver = socket.socketpair()
    # Shaping's smallest paced chunk (4 KiB), whatever the rate: a task of 40-60 KB (Table IV's
    # D) then goes out in 10-15 paced writes, not one or two of ~20 ms of link time each.
    chunk = MIN_CHUNK_BYTES
    frames = (_Frame(payload[i:i + chunk]) for i in range(0, len(payload), chunk))
    received = bytearray()

    def send() -> None:
        with sender:
            for frame in pace_frames(frames, rate_bps):
                sender.sendall(frame.data)

    start = time.perf_counter()
    writer = threading.Thread(target=send, daemon=True)
    writer.start()
    with receiver:
        while True:
            got = receiver.recv(1 << 16)
            if not got:
                break
            received += got
    writer.join()
    return bytes(received), time.perf_counter() - start


def _images(payload: bytes, count: int) -> torch.Tensor:
    """The digits at the start of a task's payload, as float inputs in [0, 1]."""
    raw = np.frombuffer(payload[:count * task_inputs.IMAGE_BYTES], dtype=np.uint8)
    return torch.from_numpy(raw.reshape(count, 1, 28, 28).astype(np.float32) / 255.0)


class _Fetch:
    """One model download of a slot, shared by the tasks that need it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.model: Optional[torch.nn.Module] = None
        self.seconds = 0.0
        self.bytes = 0
        self.refused = ""


def _fetch(ctx: HandlerContext, gw: Gateway, key: str, model: str, wait_s: float,
           start: float, fetch: _Fetch, run_id: str) -> None:
    try:
        with ctx.phase("placement_fetch", run_id=run_id, model=model) as span:
            # Cut off at wait_s whatever it got: a partial model is never cached.
            got = ctx.transfers.download(key, wait_s=wait_s, timeout_s=wait_s)
            span.bytes = got.stats.bytes
        blob = tensor_bytes(got.tensors["bytes"])
        meta = pl.ModelMeta.from_meta(got.meta)
        if meta.model != model:
            raise CacheRefused(f"asked for {model!r}, the edge sent {meta.model!r}")
        fetch.bytes = len(blob)
        fetch.model = gw.cache.put(model, blob, meta.size_bytes)
    except Exception as exc:  # cut off, refused, or late: the model is not cached
        fetch.refused = f"{model}: {exc}"
    finally:
        fetch.seconds = time.perf_counter() - start
        fetch.done.set()


def _run_task(ctx: HandlerContext, gw: Gateway, req: pl.SlotIns, task: pl.TaskIns,
              fetch: Optional[_Fetch], start: float) -> pl.TaskRes:
    kind = task_inputs.task_type(task.task_type)
    made = task_inputs.make_task_input(kind, gw.images, gw.labels, task.data_bytes, task.noisy,
                                       task_inputs.generator(task.seed))
    payload, source_s = source_hop(made.payload(), task.source_bps)
    count = made.images.shape[0]
    if not task.on_gateway:
        meta = pl.TaskMeta(slot=req.slot, index=task.index, task_type=task.task_type,
                           images=count, labels="".join(str(int(v)) for v in made.labels))
        key = pl.PlacementKeys(req.run_id).task(req.slot, task.index)
        left = task.deadline_s - (time.perf_counter() - start)
        reason = "late" if left <= 0 else "ok"  # the deadline passed on the first hop
        try:
            if reason == "ok":
                ctx.transfers.upload(key, {"data": bytes_tensor(payload)}, rate_bps=task.uplink_bps,
                                     meta=meta.to_meta(), timeout_s=left)
        except grpc.RpcError as exc:  # cut off at the deadline: late; anything else: refused
            reason = "late" if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED else "refused"
            if reason == "refused":
                logger.warning("task %d's upload to the edge failed: %s", task.index, exc.details())
        elapsed = time.perf_counter() - start
        return pl.TaskRes(index=task.index, delay_s=elapsed, completed=False, correct=0,
                          images=count, reason=reason, source_s=source_s,
                          uplink_s=elapsed - source_s)

    def result(reason: str, compute_s: float = 0.0, correct: int = 0) -> pl.TaskRes:
        delay = time.perf_counter() - start
        done = reason == "ok" and delay <= task.deadline_s
        return pl.TaskRes(index=task.index, delay_s=delay, completed=done,
                          correct=correct if done else 0, images=count,
                          reason=reason if reason != "ok" or done else "late",
                          source_s=source_s, fetch_s=fetch.seconds if fetch else 0.0,
                          compute_s=compute_s)

    if fetch is not None:  # eq. (7): the model's transfer overlaps the task's upload
        fetch.done.wait(max(0.0, task.deadline_s - (time.perf_counter() - start)))
        if not fetch.done.is_set():
            return result("late-model")
        if fetch.model is None:
            return result("refused")
    if task.model not in gw.cache:  # Algorithm 1 did not place it here
        return result("no-model")
    model = gw.cache.get(task.model)
    left = task.deadline_s - (time.perf_counter() - start)
    if left <= 0:
        return result("late")
    job = gw.scheduler.submit(model, _images(payload, count), task.share)
    try:
        done = job.result(timeout=left)
    except concurrent.futures.TimeoutError:
        job.cancel()
        return result("late")
    correct = int((done.predictions == made.labels).sum())
    return result("ok", done.compute_s, correct)


@registry.command(pl.SLOT)
def slot(ctx: HandlerContext, req: pl.SlotIns) -> pl.SlotRes:
    """Run one slot's tasks as decided, then keep what omega kept (Step 4)."""
    gw = _gateway(ctx)
    for task in req.tasks:  # refused before anything runs or changes
        task_inputs.task_type(task.task_type)
        if task.model not in gw.models:
            raise ValueError(f"task {task.index}: unknown model {task.model!r}; the catalogue has "
                             f"{sorted(gw.models)}")
        if gw.models[task.model].task_type != task.task_type:
            raise ValueError(f"task {task.index} is a {task.task_type!r} task; {task.model!r} "
                             f"serves {gw.models[task.model].task_type!r}")
    gw.cache.keep(req.held)  # a new episode starts from empty caches
    gw.cache.peak_bytes = gw.cache.held_bytes
    start = time.perf_counter()
    fetches: Dict[str, _Fetch] = {}
    threads: List[threading.Thread] = []
    for task in req.tasks:
        if task.on_gateway and task.fetch_key and task.model not in fetches:
            fetch = fetches[task.model] = _Fetch()
            threads.append(threading.Thread(
                target=_fetch, args=(ctx, gw, task.fetch_key, task.model, req.fetch_wait_s,
                                     start, fetch, req.run_id), daemon=True))
    for thread in threads:
        thread.start()
    with ctx.phase("placement_slot", run_id=req.run_id, round=req.slot), \
            concurrent.futures.ThreadPoolExecutor(max(1, len(req.tasks))) as pool:
        results = list(pool.map(
            lambda t: _run_task(ctx, gw, req, t, fetches.get(t.model) if t.on_gateway else None,
                                start), req.tasks))
    for thread in threads:
        thread.join()
    gw.cache.keep(req.keep)
    return pl.SlotRes(tasks=results, cache=gw.cache.keys(), held_bytes=gw.cache.held_bytes,
                      peak_bytes=gw.cache.peak_bytes,
                      fetched_bytes=sum(f.bytes for f in fetches.values()),
                      refused=[f.refused for f in fetches.values() if f.refused])
