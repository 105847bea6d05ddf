"""Choosing the device and the encoders' autocast precision."""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import torch

from .errors import ConfigError

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for, but torch sees no CUDA GPU (try --device cpu)", "device")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device mps was asked for, but this torch build has no MPS support (try --device cpu)",
                          "device")
    if name not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device must be one of auto, cpu, cuda, mps, got {name!r}", "device")
    return torch.device(name)


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 in hardware (AVX512-BF16 or AMX), so autocast pays.

    Elsewhere bf16 on a CPU is emulated and slower than fp32.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else `platform.processor`), for naming benchmark figures."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def hardware_name(device: torch.device) -> str:
    """What computed on ``device``: the GPU's name on CUDA, ``Apple MPS`` on MPS, else `cpu_model`.

    Recorded in every sidecar: the same seed gives the same image only on the same kind of machine."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return cpu_model()


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run the block with torch using ``threads`` CPU threads (None: leave them), restoring the count after.

    Yields the thread count in use. The count is process-wide in torch, so two runs on threads of one
    process would see each other's setting; the engine runs one at a time."""
    before = torch.get_num_threads()
    if threads is not None and threads != before:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for the encoders, or None for plain fp32.

    ``auto``: bf16 on CUDA GPUs that support it and on CPUs with native bf16;
    fp32 elsewhere (MPS included).
    """
    if name != "auto":
        if name not in _DTYPES:
            raise ConfigError(f"precision must be one of auto, {', '.join(_DTYPES)}, got {name!r}", "precision")
        if name == "fp16" and device.type == "cpu":
            raise ConfigError("precision fp16 is not supported on the CPU; use bf16 or fp32", "precision")
        if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError(f"precision bf16 is not supported by {torch.cuda.get_device_name()}; use fp16 or fp32",
                              "precision")
        return _DTYPES[name]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


_OOM_MARKS = ("out of memory", "can't allocate memory", "cannot allocate memory", "failed to allocate")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a device running out of memory: `MemoryError`, ``torch.cuda.OutOfMemoryError``, or the
    RuntimeError of the CPU allocator ("DefaultCPUAllocator: can't allocate memory") or of MPS."""
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(mark in str(exc).lower() for mark in _OOM_MARKS)


def precision_name(dtype: torch.dtype | None) -> str:
    """``fp32``, ``bf16`` or ``fp16``."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast context for ``dtype`` on ``device``; a no-op for fp32.

    While a CUDA graph is being captured, autocast's cache of cast weights is off,
    as torch's CUDA-graph notes ask: a cached cast would outlive the capture."""
    if dtype is None:
        return contextlib.nullcontext()
    capturing = device.type == "cuda" and torch.cuda.is_current_stream_capturing()
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=not capturing)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameter numbers (malloc.h)
_MMAP_THRESHOLD_MAX = 32 * 2**20  # the maximum mallopt(3) documents for 64-bit; 1 GiB measured no better


@functools.lru_cache(maxsize=1)
def reuse_freed_cpu_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the OS.

    A CPU step allocates and frees about a gigabyte of activations. With
    glibc's defaults, blocks over its dynamic mmap threshold go back to the
    OS when freed and are page-faulted (and zeroed) back in the next step.
    Raising the trim threshold and fixing the mmap threshold at 32 MiB keeps
    most of them in the heap: about 4 % per step at the reference settings
    on a 2-core CPU (2.85 s against 2.95 s in alternating A/B runs). It is
    what jemalloc or tcmalloc via LD_PRELOAD would give, without asking
    users to set that up. Affects the whole process; a no-op (False) where
    libc is not glibc. Called once, by `Stylizer` on the CPU.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # musl and others have no such knobs
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)) and bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX))
