"""The hardware probe: what a device tells the server when it registers.

Identity comes from files (``/proc/cpuinfo``, the device tree, Jetson's
``/etc/nv_tegra_release``, the process's cgroup limits); every helper that
reads one takes a ``root`` so tests run against fixture trees laid out like the
boards. Compute speed is *measured*, not looked up: a short matmul and conv2d
micro-benchmark on the device the workloads will use (CUDA when torch can use
it, else the CPU, with as many threads as the process really has cores), so a
board, a GPU host and an emulated device under a CPU quota are compared on
what they actually deliver.
"""
from __future__ import annotations

import logging
import math
import os
import platform
import socket
import statistics
import time
from pathlib import Path
from typing import Callable, Mapping

import psutil
import torch
from edgebed.device.meter.rpi import board_model
from edgebed.proto.records import CapabilityProfile, LinkProfile

logger = logging.getLogger(__name__)

# Micro-benchmark shapes (small enough for a Pi, big enough to leave caches).
MATMUL_N = 256
CONV_INPUT = (1, 16, 64, 64)
CONV_OUT_CHANNELS = 32
CONV_KERNEL = 3
# A sample spans one CFS period so that, under a CPU quota, every sample
# contains its share of throttled time; a median of per-iteration times would
# skip the throttled gaps and report the unthrottled speed.
SAMPLE_WINDOW_S = 0.1


def _read_text(root: str | os.PathLike[str], rel: str) -> str | None:
    try:
        with open(Path(root) / rel, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    # Device-tree strings end in NUL; some files carry a trailing newline.
    return data.decode("utf-8", "replace").replace("\x00", "").strip()


def read_cpuinfo(root: str | os.PathLike[str] = "/") -> dict[str, str]:
    """First value of each ``key : value`` in ``/proc/cpuinfo`` (keys keep their case:
    x86's ``model`` is a number, the Pi's ``Model`` is the board)."""
    fields: dict[str, str] = {}
    for line in (_read_text(root, "proc/cpuinfo") or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


def read_device_tree_model(root: str | os.PathLike[str] = "/") -> str:
    return board_model(str(root)) or ""


def read_cpu_model(root: str | os.PathLike[str] = "/") -> str:
    """``"<board>, <cpu>"`` when both are known, else whichever is.

    On x86 ``model name`` says everything. On ARM boards it is only the core
    type ("ARMv8 Processor rev 1 (v8l)"), and the board ("Raspberry Pi 4 Model
    B Rev 1.1", "NVIDIA Jetson Nano Developer Kit") is what selects power
    coefficients, so the board comes first.
    """
    cpuinfo = read_cpuinfo(root)
    board = cpuinfo.get("Model") or read_device_tree_model(root)
    cpu = cpuinfo.get("model name") or cpuinfo.get("Hardware") or ""
    if board and cpu and cpu != board:
        return f"{board}, {cpu}"
    return board or cpu or platform.processor() or platform.machine() or "unknown"


def read_jetson_model(root: str | os.PathLike[str] = "/") -> str:
    """The Jetson's model, or "" when this is not a Jetson.

    The device-tree model names the kit; ``/etc/nv_tegra_release`` (L4T's
    "# R32 (release), REVISION: 7.1, ..., BOARD: t210ref, ...") identifies a
    Jetson whose device tree is not exposed, e.g. inside a container.
    """
    model = read_device_tree_model(root)
    if "jetson" in model.lower():
        return model
    release = _read_text(root, "etc/nv_tegra_release")
    if release is None:
        return ""
    if model:
        return model
    head = release.lstrip("# ")
    fields = {}
    for part in head.split(","):
        key, _, value = part.partition(":")
        fields[key.strip().upper()] = value.strip()
    l4t = "L4T " + head.split(" ", 1)[0]
    if fields.get("REVISION"):
        l4t += "." + fields["REVISION"]
    board = fields.get("BOARD", "")
    return f"{board} ({l4t})" if board else l4t


def _cuda_name_from_nvml() -> str:
    try:
        import pynvml
    except ImportError:
        return ""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        logger.debug("no NVML: %s", exc)
        return ""
    try:
        if pynvml.nvmlDeviceGetCount() < 1:
            return ""
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
        # nvidia-ml-py < 11.515 returns bytes.
        return name.decode() if isinstance(name, bytes) else str(name)
    except pynvml.NVMLError as exc:
        logger.debug("NVML device query failed: %s", exc)
        return ""
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def detect_accelerator(root: str | os.PathLike[str] = "/", *, probe_cuda: bool = True) -> str:
    """``"jetson:<model>"``, ``"cuda:<name>"`` or ``"none"``.

    Jetson first: torch sees its GPU as CUDA too, but "jetson" is what tells the
    server (and the meter factory) that power comes from INA3221 rails. NVML is
    asked when torch cannot use CUDA (a CPU-only wheel on a GPU host); the
    benchmark then still runs on the CPU, which a warning says.
    """
    jetson = read_jetson_model(root)
    if jetson:
        return f"jetson:{jetson}"
    if not probe_cuda:
        return "none"
    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    name = _cuda_name_from_nvml()
    if name:
        logger.warning("GPU %s present but this torch %s cannot use CUDA; workloads "
                       "and the benchmark run on the CPU", name, torch.__version__)
        return f"cuda:{name}"
    return "none"


def _cgroup_entries(root: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """(controllers, path) pairs from the process's ``/proc/self/cgroup``."""
    entries = []
    for line in (_read_text(root, "proc/self/cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            entries.append((parts[1], parts[2]))
    return entries


def _ancestors(hierarchy: Path, rel: str) -> list[Path]:
    """The process's cgroup dir and every ancestor up to the hierarchy root.

    Limits nest: a parent's quota caps every child. In a container without a
    cgroup namespace ``rel`` names a host path that is not mounted; then only
    the visible root (which is the container's own cgroup) counts.
    """
    dirs = [hierarchy]
    current = hierarchy
    for part in [p for p in rel.split("/") if p]:
        current = current / part
        if not current.is_dir():
            return [hierarchy]
        dirs.append(current)
    return dirs


def _v1_cpu_quota(directory: Path) -> float:
    try:
        quota = int(_read_text(directory, "cpu.cfs_quota_us") or "-1")
        period = int(_read_text(directory, "cpu.cfs_period_us") or "0")
    except ValueError:
        return 0.0
    return quota / period if quota > 0 and period > 0 else 0.0


def _v2_cpu_quota(directory: Path) -> float:
    fields = (_read_text(directory, "cpu.max") or "").split()  # "max 100000" = none
    try:
        quota, period = int(fields[0]), int(fields[1])
    except (IndexError, ValueError):
        return 0.0
    return quota / period if quota > 0 and period > 0 else 0.0


def cgroup_cpu_limit(root: str | os.PathLike[str] = "/") -> float:
    """Cores this process may use by cgroup quota (v1 or v2); 0.0 = no limit."""
    cgroup_dir = Path(root) / "sys/fs/cgroup"
    limits = []
    for controllers, rel in _cgroup_entries(root):
        if controllers == "":  # the v2 line "0::/path"
            unified = cgroup_dir
            if not (unified / "cgroup.controllers").is_file():
                unified = cgroup_dir / "unified"
            limits += [_v2_cpu_quota(d) for d in _ancestors(unified, rel)]
        elif "cpu" in controllers.split(","):
            for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
                if (cgroup_dir / name).is_dir():
                    limits += [_v1_cpu_quota(d) for d in _ancestors(cgroup_dir / name, rel)]
                    break
    limits = [x for x in limits if x > 0]
    return min(limits) if limits else 0.0


def available_cores(root: str | os.PathLike[str] = "/", cpu_quota: float = 0.0) -> int:
    """Cores the process can really use: affinity, then cgroup quota, then ours.

    A fractional quota rounds up (0.5 cores still runs one thread); the exact
    fraction travels in the profile's ``cpu_quota``.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    for limit in (cgroup_cpu_limit(root), cpu_quota):
        if limit > 0:
            cores = min(cores, math.ceil(limit))
    return max(1, cores)


def cpu_freq_mhz() -> float:
    """Maximum frequency when the kernel reports one (stable across DVFS
    states), else the current one, else 0."""
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError, RuntimeError) as exc:
        logger.debug("psutil.cpu_freq failed: %s", exc)
        return 0.0
    if freq is None:
        return 0.0
    return float(freq.max or freq.current or 0.0)


def _time_kernel(run: Callable[[], object], sync: Callable[[], None], flop: float,
                 budget_s: float) -> float:
    """Median GFLOP/s over windows of about ``SAMPLE_WINDOW_S`` within ``budget_s``."""
    for _ in range(2):  # warm-up: allocation, kernel selection, thread pool start
        run()
    sync()
    start = time.perf_counter()
    run()
    sync()
    per_iter = max(time.perf_counter() - start, 1e-9)
    window = min(SAMPLE_WINDOW_S, budget_s / 2)
    per_sample = max(1, int(window / per_iter))
    rates = []
    deadline = time.perf_counter() + budget_s
    while not rates or time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(per_sample):
            run()
        sync()
        rates.append(flop * per_sample / max(time.perf_counter() - start, 1e-9))
    return statistics.median(rates) / 1e9


def measure_throughput(benchmark_s: float = 0.5, device: str | None = None,
                       num_threads: int | None = None) -> tuple[float, float]:
    """(matmul GFLOP/s, conv2d GFLOP/s) in float32, half the budget each.

    ``device`` defaults to CUDA when torch can use it, else the CPU: that is
    where the workloads run. ``num_threads`` applies only for the duration of
    the benchmark; torch's global setting is restored afterwards.
    """
    if benchmark_s <= 0:
        return 0.0, 0.0
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    on_cuda = device.startswith("cuda")

    def sync() -> None:
        if on_cuda:
            torch.cuda.synchronize()

    previous_threads = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    try:
        with torch.no_grad():
            a = torch.randn(MATMUL_N, MATMUL_N, device=device)
            b = torch.randn(MATMUL_N, MATMUL_N, device=device)
            matmul = _time_kernel(lambda: torch.mm(a, b), sync, 2.0 * MATMUL_N ** 3,
                                  benchmark_s / 2)
            x = torch.randn(*CONV_INPUT, device=device)
            w = torch.randn(CONV_OUT_CHANNELS, CONV_INPUT[1], CONV_KERNEL, CONV_KERNEL,
                            device=device)
            # padding keeps H x W, so every output pixel costs Cin*k*k MACs.
            conv_flop = (2.0 * CONV_OUT_CHANNELS * CONV_INPUT[2] * CONV_INPUT[3]
                         * CONV_INPUT[1] * CONV_KERNEL * CONV_KERNEL)
            conv = _time_kernel(
                lambda: torch.nn.functional.conv2d(x, w, padding=CONV_KERNEL // 2),
                sync, conv_flop, benchmark_s / 2)
    finally:
        if num_threads:
            torch.set_num_threads(previous_threads)
    logger.debug("benchmark on %s: matmul %.2f GFLOP/s, conv %.2f GFLOP/s",
                 device, matmul, conv)
    return matmul, conv


def probe_profile(
    *,
    name_hint: str = "",
    power_backend: str = "null",
    cpu_quota: float = 0.0,
    link: LinkProfile | None = None,
    labels: Mapping[str, str] | None = None,
    benchmark_s: float = 0.5,
    root: str | os.PathLike[str] = "/",
) -> CapabilityProfile:
    """Probe this host. ``cpu_quota`` is the quota the agent applied (0 = none).

    ``name_hint`` only labels the log line: the device's name travels in the
    registration, and ``hostname`` stays the real one so agents emulated on
    one host visibly share it. ``benchmark_s <= 0`` skips the benchmark and
    reports 0 GFLOP/s ("not measured").
    """
    cores = available_cores(root, cpu_quota)
    accelerator = detect_accelerator(root)
    matmul, conv = measure_throughput(benchmark_s, num_threads=cores)
    profile = CapabilityProfile(
        cpu_model=read_cpu_model(root),
        cpu_cores=cores,
        cpu_freq_mhz=cpu_freq_mhz(),
        ram_bytes=int(psutil.virtual_memory().total),
        accelerator=accelerator,
        torch_version=torch.__version__,
        python_version=platform.python_version(),
        platform=platform.platform(),
        matmul_gflops=matmul,
        conv_gflops=conv,
        power_backend=power_backend,
        cpu_quota=float(cpu_quota),
        link=link if link is not None else LinkProfile(),
        hostname=socket.gethostname(),
        labels=dict(labels or {}),
    )
    logger.info("probed %s: %s, %d cores, %s, matmul %.2f GFLOP/s, conv %.2f GFLOP/s",
                name_hint or profile.hostname, profile.cpu_model, cores, accelerator,
                matmul, conv)
    return profile
