"""Size guards: refuse, within a second and before allocating, a job that cannot fit in memory."""

from __future__ import annotations

import os
import warnings

from sslkit.errors import ResourceError, SslkitWarning, UserError

MEMORY_SHARE = 0.8
"""Share of the machine's available memory one job may plan to use."""


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable on Linux, else physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(needed_bytes: float, what: str, change: str) -> None:
    """ResourceError naming ``what``, its estimate and ``change`` (what to do instead) when
    ``needed_bytes`` exceeds the memory this job may use."""
    limit = MEMORY_SHARE * available_memory()
    if needed_bytes > limit:
        raise ResourceError(f"{what} needs about {format_bytes(needed_bytes)}, more than the {format_bytes(limit)} "
                            f"of memory available; {change}")


BATCH_BYTES = 2**30
"""Memory the frames processed at once may take: with many pairs, batches hold fewer frames."""


def frames_per_batch(frame_bytes: int, halo: int, most: int, what: str, change: str) -> int:
    """Frames processed at once: ``most``, or fewer so that they and an integration window's ``halo``
    frames of ``frame_bytes`` each fit ``BATCH_BYTES`` and a quarter of the available memory;
    ResourceError (naming ``what``, suggesting ``change``) when even one frame and its halo would
    not fit in memory."""
    budget = min(BATCH_BYTES, available_memory() // 4)
    batch = int(max(1, min(most, budget // frame_bytes - halo)))
    check_memory((batch + halo) * frame_bytes, f"{what}, {batch + halo} frames at once", change)
    return batch


def check_disk(needed_bytes: float, folder: os.PathLike, what: str, change: str) -> None:
    """ResourceError naming ``what``, its estimate and ``change`` when ``needed_bytes`` exceed the
    free space of the file system that will hold ``folder`` (its nearest existing ancestor)."""
    import shutil
    from pathlib import Path

    place = Path(folder).absolute()
    while not place.exists():
        place = place.parent
    free = shutil.disk_usage(place).free
    if needed_bytes > free:
        raise ResourceError(f"{what}: about {format_bytes(needed_bytes)} in all, more than the {format_bytes(free)} "
                            f"free on the disk of {folder}; {change}")


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PB"


def resolve_device(device: str) -> str:
    """A torch device name: ``auto`` → cuda when torch sees a GPU, else cpu; an unavailable or unknown device is a UserError."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{device}': no CUDA device is available (use cpu)")
    if device != "cpu" and not device.startswith("cuda"):
        raise UserError(f"device must be auto, cpu or cuda[:N], got '{device}'")
    return device


def machine_description() -> str:
    """The machine a benchmark ran on, in one line: architecture, cores, the CPU's vector extensions
    as torch uses them, and whether it computes in bfloat16."""
    import platform

    import torch

    native = ", native bfloat16" if native_bfloat16("cpu") else ""
    return f"{platform.machine()}, {os.cpu_count()} cores, {torch.backends.cpu.get_cpu_capability()}{native}"


def native_bfloat16(device: str) -> bool:
    """Whether ``device`` computes in bfloat16 natively: a GPU from Ampere on, a CPU with AVX-512 or
    the Arm equivalents (oneDNN's own check). Elsewhere bfloat16 is emulated."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


def warn_if_emulated_bfloat16(device: str) -> None:
    """A note that reduced precision is asked of a device that only emulates it, so slower than float32."""
    if not native_bfloat16(device):
        warnings.warn(SslkitWarning(f"this {'GPU' if device.startswith('cuda') else 'CPU'} has no bfloat16 arithmetic: it is emulated, so "
                                    "--precision bfloat16 runs many times slower than float32 here, not faster"), stacklevel=3)
