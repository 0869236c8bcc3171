"""The raised-call replay rule: the port must raise the class eryx raised (eryx_port.parity.outcome)."""

import numpy as np

from eryx_port.parity.outcome import recorded_outcome
from trace_tools.compare import compare
from trace_tools.values import Call, ExceptionData


def _raised(exc_type: str) -> Call:
    return Call(function="eryx.f", scenario="s", index=0, args={}, passed=(),
                exception=ExceptionData(type=exc_type, message="bad input"))


def _outcome(call, run):
    return compare(*recorded_outcome(call, run))


def _raise(exc):
    def run():
        raise exc

    return run


def test_same_class_passes():
    assert _outcome(_raised("ValueError"), _raise(ValueError("x"))).ok


def test_other_class_fails():
    out = _outcome(_raised("ValueError"), _raise(TypeError("x")))
    assert not out.ok and "TypeError" in out.report


def test_subclass_and_qualified_names_pass():
    assert _outcome(_raised("LookupError"), _raise(KeyError("x"))).ok
    assert _outcome(_raised("numpy.linalg.LinAlgError"), _raise(np.linalg.LinAlgError("x"))).ok


def test_returning_instead_of_raising_fails():
    assert not _outcome(_raised("ValueError"), lambda: 1.0).ok


def test_calls_that_returned_compare_their_results():
    call = Call(function="eryx.f", scenario="s", index=0, args={}, passed=(), result=np.array([1.0]))
    assert compare(*recorded_outcome(call, lambda: np.array([1.0]))).ok
