"""One way to turn user input into tensors: float64 on the CPU unless asked otherwise."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

DEFAULT_DTYPE = torch.float64
_COMPLEX_OF = {torch.float64: torch.complex128, torch.float32: torch.complex64}
_REAL_OF = {torch.complex128: torch.float64, torch.complex64: torch.float32}


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    """The real floating dtype to compute in; accepts torch dtypes and the names 'float64'/'float32'."""
    if dtype is None:
        return DEFAULT_DTYPE
    if isinstance(dtype, str):
        name = dtype.removeprefix("torch.")
        if name not in ("float64", "float32"):
            raise ValueError(f"dtype must be float64 or float32, not {dtype!r}")
        return getattr(torch, name)
    if dtype not in _COMPLEX_OF:
        raise ValueError(f"dtype must be torch.float64 or torch.float32, not {dtype}")
    return dtype


def resolve_device(device: torch.device | str | None) -> torch.device:
    """The device to compute on; a clear error when CUDA is asked for and absent."""
    if device is None:
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(device)!r} was asked for, but CUDA is not available on this machine")
    return dev


def float_context(dtype: Any, device: Any, *values: Any) -> tuple[torch.dtype, torch.device]:
    """dtype and device to compute in: the explicit ones, else those the tensors among ``values`` imply.

    Without ``dtype=``, float32 is used only when every floating tensor given is
    float32 (so a float64 parameter is never rounded to float32); float64 otherwise.
    Without ``device=``, the first tensor's device, else the CPU.
    """
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    if dtype is None:
        floats = {t.dtype for t in tensors if t.is_floating_point()}
        dtype = torch.float32 if floats == {torch.float32} else torch.float64
    if device is None:
        device = next((t.device for t in tensors), None)
    return resolve_dtype(dtype), resolve_device(device)


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return _COMPLEX_OF[dtype]


def as_real(x: Any, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """A real floating tensor of ``x``; tensors keep their autograd graph (no copy when nothing changes)."""
    dtype = resolve_dtype(dtype) if dtype is not None else None
    if isinstance(x, torch.Tensor):
        target = dtype or (x.dtype if x.dtype in _COMPLEX_OF else DEFAULT_DTYPE)
        return x.to(device=device if device is not None else x.device, dtype=target)
    arr = np.asarray(x)
    if not arr.flags.writeable:  # e.g. arrays decoded from a trace; torch warns on read-only buffers
        arr = arr.copy()
    return torch.as_tensor(arr, dtype=dtype or DEFAULT_DTYPE, device=resolve_device(device))


def to_numpy(x: Any) -> Any:
    """Detach and copy a tensor to NumPy (other values pass through)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return x
