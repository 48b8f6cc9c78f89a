"""Device choice: auto picks CUDA, then Apple MPS, then CPU, and says which."""
from __future__ import annotations

import os

import torch

from .errors import UserError, UserTypeError

__all__ = ["resolve_device", "describe_device", "autocast_dtype", "available_memory"]

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise UserTypeError(f"device must be a string like 'auto', 'cpu' or 'cuda', got {device!r}")
    name = device.lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    base = name.split(":")[0]
    if base not in ("cpu", "cuda", "mps"):
        raise UserError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
    if base == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was asked for but no CUDA GPU is available to torch "
                         "(install a CUDA build of torch, or use device='auto')")
    if base == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("device 'mps' was asked for but Apple MPS is not available")
    return torch.device(name)


def describe_device(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    if dev.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return dev.type


def cpu_has_amx() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (Intel AMX, Sapphire Rapids and
    later), where oneDNN's bf16 convolutions beat fp32 ones; elsewhere bf16 is emulated or slower."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except Exception:   # a private probe: any failure means "not known to be there"
        return False


def autocast_dtype(dev: torch.device, *, training: bool = False) -> torch.dtype | None:
    """bf16 where the GPU supports it, else fp16 on CUDA; training on a CPU with AMX: bf16
    (``NAPARI_UNET_CPU_BF16=0`` turns it off, ``=1`` forces it); None (fp32) elsewhere.

    On a 2-core Xeon with AMX the trainer makes 1.56x the steps per second in 2D (3D: 1.22x;
    benchmarks/cpu_precision.py) at the same IoU at fixed steps (docs/quality.md, forty-fourth
    session). Prediction stays fp32 on a CPU."""
    if os.environ.get("NAPARI_UNET_NO_AMP"):
        return None
    if dev.type == "cpu":
        flag = os.environ.get("NAPARI_UNET_CPU_BF16", "auto").strip().lower()
        if flag not in ("auto", "0", "1"):   # a typo must not quietly change the precision
            raise UserError(f"NAPARI_UNET_CPU_BF16 must be auto, 0 or 1, not {flag!r}")
        if not training or flag == "0":
            return None
        return torch.bfloat16 if flag == "1" or cpu_has_amx() else None
    if dev.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def available_memory(dev: torch.device) -> int:
    """Bytes that can be used now: free GPU memory on CUDA, available RAM otherwise."""
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil  # optional

        return int(psutil.virtual_memory().available)
    except Exception:
        return 4 << 30
