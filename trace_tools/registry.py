"""The port registry: which port function implements which NumPy function, and how to replay a call.

A port module registers one entry per NumPy qualified name::

    from trace_tools.registry import parity, gradcheck

    @parity("eryx.map_utils.compute_resolution", port="eryx_port.map_utils.compute_resolution")
    def _(call):
        out = compute_resolution(call.args["cell"], call.args["hkl"])
        return out, call.result            # (port output, recorded NumPy output)

    @gradcheck("eryx.scatter.structure_factors", inputs=("xyz", "U", "q_grid"))
    def _(call, name):
        ...                                # shrink the recorded inputs
        return fn, (tensor_a, tensor_b)    # gradcheck(fn, inputs) in float64

The replay function receives a :class:`trace_tools.values.Call` and returns
``(actual, expected)``; both are compared element by element by
:func:`trace_tools.compare.compare`: each element within ``rtol`` (1e-10) of
itself, or within ``floor`` times the array's largest magnitude, whichever is
larger. The default floor (256 eps) is the round-off of a float64 sum of a few
hundred terms; a function whose computation loses more (an ill-conditioned
solve, eigenvectors of close eigenvalues) states its floor and the reason. Tests and the progress dashboard read the
registry through :func:`load_registry`.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from .compare import DEFAULT_FLOOR, DEFAULT_RTOL

DEFAULT_REGISTRY_MODULE = "eryx_port.parity"


@dataclass
class PortEntry:
    numpy_name: str
    port_name: str
    replay: Callable[[Any], tuple[Any, Any]]
    rtol: float = DEFAULT_RTOL
    atol: float | None = None  # an absolute floor (rarely right: prefer ``floor``, relative to the array's scale)
    tolerance_reason: str | None = None
    floor: float = DEFAULT_FLOOR  # relative to the largest magnitude of each expected array
    notes: str = ""
    grad_inputs: tuple[str, ...] = ()
    grad_builder: Callable[[Any, str], tuple[Callable, tuple]] | None = None
    source: str = field(default="", repr=False)  # module that registered it

    @property
    def differentiable(self) -> bool:
        return bool(self.grad_inputs)


REGISTRY: dict[str, PortEntry] = {}


class RegistryError(ValueError):
    pass


def parity(
    numpy_name: str,
    *,
    port: str,
    rtol: float = DEFAULT_RTOL,
    atol: float | None = None,
    floor: float = DEFAULT_FLOOR,
    reason: str | None = None,
    notes: str = "",
) -> Callable:
    """Register the replay function of ``numpy_name``.

    ``reason`` is required when the tolerance is looser than the default: rtol above 1e-10,
    a floor above 256 eps, or an absolute ``atol``.
    """
    if rtol > DEFAULT_RTOL and not reason:
        raise RegistryError(f"{numpy_name}: rtol {rtol:g} is looser than {DEFAULT_RTOL:g}; give the reason")
    if (floor > DEFAULT_FLOOR or atol is not None) and not reason:
        raise RegistryError(f"{numpy_name}: a floor above the round-off default needs its reason")

    def decorate(replay: Callable) -> Callable:
        if numpy_name in REGISTRY and REGISTRY[numpy_name].replay is not replay:
            raise RegistryError(f"{numpy_name} is registered twice ({REGISTRY[numpy_name].source})")
        REGISTRY[numpy_name] = PortEntry(
            numpy_name=numpy_name,
            port_name=port,
            replay=replay,
            rtol=rtol,
            atol=atol,
            floor=floor,
            tolerance_reason=reason,
            notes=notes,
            source=getattr(inspect.getmodule(replay), "__name__", ""),
        )
        return replay

    return decorate


def gradcheck(numpy_name: str, *, inputs: tuple[str, ...]) -> Callable:
    """Register how to build gradcheck cases for the differentiable ``inputs`` of ``numpy_name``.

    The builder is called as ``builder(call, input_name)`` and returns
    ``(fn, tensors)``: ``torch.autograd.gradcheck(fn, tensors)`` must pass in float64; or
    ``(fn, tensors, {"eps": step, "reason": why})`` where the finite-difference step must differ
    from the default 1e-6 (the reason is required and shown on the dashboard).
    Register the parity entry first.
    """

    def decorate(builder: Callable) -> Callable:
        if numpy_name not in REGISTRY:
            raise RegistryError(f"gradcheck for {numpy_name} registered before its parity entry")
        entry = REGISTRY[numpy_name]
        entry.grad_inputs = tuple(inputs)
        entry.grad_builder = builder
        return builder

    return decorate


def load_registry(module: str = DEFAULT_REGISTRY_MODULE) -> dict[str, PortEntry]:
    """Import the port's registry package (which registers its entries) and return the registry."""
    importlib.import_module(module)
    return REGISTRY
