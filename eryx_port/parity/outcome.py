# SPDX-License-Identifier: GPL-2.0-or-later
"""What a replay compares when the recorded eryx call raised: the port must raise too."""

from __future__ import annotations

from typing import Any, Callable


def recorded_outcome(call, run: Callable[[], Any]) -> tuple[Any, Any]:
    """``(port output, recorded output)``; a call that raised in eryx must raise in the port too."""
    if call.exception is None:
        return run(), call.result
    try:
        run()
    except Exception as exc:  # the port's own error for the same bad input
        return f"raised ({type(exc).__name__})", f"raised ({type(exc).__name__})"
    return "returned", f"raised {call.exception.type}: {call.exception.message}"
