# SPDX-License-Identifier: GPL-2.0-or-later
"""NumPy in, NumPy out, the torch port underneath: the conversions behind :mod:`eryx_port.compat`.

Every facade function converts its arguments with :func:`to_port` (NumPy arrays become tensors of the
same dtype on the CPU, facade objects their port objects), calls the port, and converts the result
back with :func:`to_numpy` (tensors become arrays, port objects their facade objects). Facade classes
hold a port object and convert on every attribute read, method call and assignment, so there is one
implementation and no state to keep in step.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import numpy as np
import torch

# port class -> facade class, filled by facade_class()
_FACADES: dict[type, type] = {}


def to_port(value: Any) -> Any:
    """Arguments for the port: arrays become tensors (dtype kept), facades their port objects."""
    if isinstance(value, Facade):
        return object.__getattribute__(value, "_port")
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biufc":
            return torch.from_numpy(np.ascontiguousarray(value))
        return value  # strings, objects: as they are
    if isinstance(value, tuple):
        return tuple(to_port(v) for v in value)
    if isinstance(value, list):
        return [to_port(v) for v in value]
    if isinstance(value, dict):
        return {k: to_port(v) for k, v in value.items()}
    return value


def to_numpy(value: Any) -> Any:
    """Results for NumPy code: tensors become arrays, port objects their facades (containers kept)."""
    if isinstance(value, torch.Tensor):
        t = value.detach()
        if t.is_complex():
            t = t.resolve_conj()
        return t.resolve_neg().cpu().numpy()
    facade = _FACADES.get(type(value))
    if facade is not None:
        return facade._from_port(value)
    if isinstance(value, tuple):
        items = [to_numpy(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, list):
        return [to_numpy(v) for v in value]
    if isinstance(value, dict):
        return {k: to_numpy(v) for k, v in value.items()}
    return value


def facade_function(func: Callable, name: str | None = None) -> Callable:
    """``func`` taking and returning NumPy values."""

    @functools.wraps(func)
    def numpy_facing(*args, **kwargs):
        return to_numpy(func(*to_port(args), **to_port(kwargs)))

    if name:
        numpy_facing.__name__ = numpy_facing.__qualname__ = name
    return numpy_facing


class _FacadeMeta(type):
    """Class-level reads (static methods, class attributes) go to the port class too."""

    def __getattr__(cls, name):
        port_cls = cls.__dict__.get("_port_class")
        if port_cls is None or name.startswith("__"):
            raise AttributeError(name)
        value = getattr(port_cls, name)
        return facade_function(value) if callable(value) else to_numpy(value)


class Facade(metaclass=_FacadeMeta):
    """A port object seen from NumPy: attributes read as arrays, methods take and return arrays."""

    _port_class: type | None = None

    def __init__(self, *args, **kwargs):
        port = self._port_class(*to_port(args), **to_port(kwargs))
        object.__setattr__(self, "_port", port)

    @classmethod
    def _from_port(cls, port):
        obj = cls.__new__(cls)
        object.__setattr__(obj, "_port", port)
        return obj

    def __getattr__(self, name):  # only reached for names the facade itself does not define
        port = object.__getattribute__(self, "_port")
        value = getattr(port, name)
        if inspect.ismethod(value) or inspect.isbuiltin(value):
            return facade_function(value)
        return to_numpy(value)

    def __setattr__(self, name, value):
        setattr(object.__getattribute__(self, "_port"), name, to_port(value))

    def __dir__(self):
        return sorted(set(dir(object.__getattribute__(self, "_port"))))

    def __repr__(self):
        return f"<eryx_port.compat {type(self).__name__} over {object.__getattribute__(self, '_port')!r}>"


def facade_class(port_cls: type, name: str | None = None, module: str | None = None) -> type:
    """The facade class of ``port_cls`` (one per port class)."""
    if port_cls in _FACADES:
        return _FACADES[port_cls]
    cls = _FacadeMeta(name or port_cls.__name__, (Facade,), {
        "_port_class": port_cls,
        "__doc__": f"NumPy-facing {port_cls.__name__} (see {port_cls.__module__}.{port_cls.__qualname__}).",
        "__module__": module or __name__,
    })
    _FACADES[port_cls] = cls
    return cls


def export(namespace: dict, port_module, names: list[str], eryx_module: str) -> list[str]:
    """Put the facade of each of ``names`` of ``port_module`` into ``namespace``. Returns the names, for
    ``__all__``."""
    for name in names:
        obj = getattr(port_module, name, None)
        if obj is None:
            raise ImportError(f"{eryx_module}.{name} has no port in {port_module.__name__}")
        if inspect.isclass(obj):
            namespace[name] = facade_class(obj, module=namespace["__name__"])
        elif callable(obj):
            namespace[name] = facade_function(obj, name)
        else:
            namespace[name] = to_numpy(obj)
    return list(names)
