# SPDX-License-Identifier: GPL-2.0-or-later
"""What a replay compares when the recorded eryx call raised: the port must raise the same class."""

from __future__ import annotations

from typing import Any, Callable


def raised_as(exc: BaseException, recorded_type: str) -> str:
    """``recorded_type`` when ``exc`` is an instance of that class (by name, through its bases), else its own name.

    ``recorded_type`` is a class name as the recorder stored it, bare (``ValueError``) or qualified
    (``numpy.linalg.LinAlgError``); a port that raises a subclass of eryx's exception raises it too.
    """
    bare = recorded_type.rsplit(".", 1)[-1]
    for cls in type(exc).__mro__:
        if recorded_type in (cls.__name__, f"{cls.__module__}.{cls.__qualname__}") or cls.__name__ == bare:
            return recorded_type
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


def recorded_outcome(call, run: Callable[[], Any]) -> tuple[Any, Any]:
    """``(port output, recorded output)``; a call that raised in eryx must raise the recorded class in the port."""
    if call.exception is None:
        return run(), call.result
    expected = f"raised {call.exception.type}"
    try:
        run()
    except Exception as exc:  # noqa: BLE001 - any class may be the recorded one; the comparison judges it
        return f"raised {raised_as(exc, call.exception.type)}", expected
    return "returned", expected
