"""The parity comparison rule (trace_tools.compare)."""

import numpy as np
import pytest
import torch

from trace_tools.compare import align_phases, compare
from trace_tools.values import ArraySummary, ElementData


def test_float_within_rtol_passes_and_reports_errors():
    e = np.array([1.0, -2.0, 3.0])
    out = compare(torch.tensor(e * (1 + 5e-11)), e)
    assert out.ok
    assert out.max_rel_err == pytest.approx(5e-11, rel=1e-3)


def test_float_beyond_rtol_fails_with_location():
    e = np.array([[1.0, 2.0], [3.0, 4.0]])
    a = e.copy()
    a[1, 0] += 1e-6
    out = compare(a, e)
    assert not out.ok
    assert "1 of 4 elements" in out.report and "(1, 0)" in out.report


def test_zero_elements_use_array_scale():
    # A cancellation residue of 1e-17 next to values of order 1 is not a relative error of infinity.
    assert compare(np.array([1.0, 1e-17]), np.array([1.0, 0.0])).ok
    assert not compare(np.array([1.0, 1e-6]), np.array([1.0, 0.0])).ok


def test_nan_must_sit_at_the_same_places():
    e = np.array([1.0, np.nan, 3.0])
    assert compare(e.copy(), e).ok
    out = compare(np.array([1.0, 2.0, np.nan]), e)
    assert not out.ok and "NaN at different places" in out.report


def test_inf_sign_matters():
    assert not compare(np.array([-np.inf]), np.array([np.inf])).ok


def test_shapes_exact():
    assert not compare(np.ones((3, 1)), np.ones(3)).ok


def test_integers_and_booleans_exact():
    assert compare(torch.tensor([1, 2, 3]), np.array([1, 2, 3])).ok
    assert not compare(np.array([1, 2, 4]), np.array([1, 2, 3])).ok
    assert not compare(np.array([True, False]), np.array([True, True])).ok
    assert not compare(np.array([1.0, 2.0]), np.array([1, 2])).ok  # floats where eryx has integers


def test_complex_by_real_and_imaginary_parts():
    e = np.array([1 + 2j, 3 - 1j])
    assert compare(torch.tensor(e), e).ok
    assert not compare(np.conj(e), e).ok


def test_containers_element_by_element():
    e = {0: np.eye(2), 1: (np.arange(3), "x", None)}
    assert compare({0: np.eye(2), 1: (np.arange(3), "x", None)}, e).ok
    assert not compare({0: np.eye(2)}, e).ok
    assert not compare({0: np.eye(2), 1: (np.arange(3), "y", None)}, e).ok
    assert not compare([1.0, 2.0], [1.0]).ok


def test_dataclass_records_compared_field_by_field():
    el = ElementData("C", (1.0, 2.0, 3.0, 4.0), (5.0, 6.0, 7.0, 8.0), 0.2, 12.011)
    assert compare(el, el).ok
    other = ElementData("N", el.it92_a, el.it92_b, el.it92_c, 14.007)
    assert not compare(other, el).ok


def test_summary_checks_shape_and_sample():
    s = ArraySummary(shape=(2, 3), dtype="float64", sha256="0" * 64, sample=np.arange(4.0))
    assert compare(np.arange(6.0).reshape(2, 3), s).ok
    assert not compare(np.arange(6.0).reshape(3, 2), s).ok
    assert not compare(np.arange(6.0).reshape(2, 3) + 1, s).ok


def test_explicit_atol_and_rtol():
    assert compare(np.array([1.0 + 1e-6]), np.array([1.0]), rtol=1e-5).ok
    assert not compare(np.array([1e-3]), np.array([0.0]), atol=1e-4).ok


def test_align_phases_recovers_modes_up_to_phase():
    rng = np.random.default_rng(0)
    v = np.linalg.qr(rng.normal(size=(4, 4)) + 1j * rng.normal(size=(4, 4)))[0]
    rotated = v * np.exp(1j * rng.uniform(0, 2 * np.pi, size=4))
    assert not compare(rotated, v).ok
    assert compare(align_phases(rotated, v), v).ok


def test_small_elements_are_checked_relatively_not_on_the_largest_scale():
    # the old floor (1e-10 of the largest element) let this pass
    assert not compare(np.array([1e6, 1.09e-3]), np.array([1e6, 1e-3])).ok
    assert compare(np.array([1e6, 1e-3 * (1 + 5e-11)]), np.array([1e6, 1e-3])).ok


def test_round_off_floor_is_256_eps_of_the_scale():
    from trace_tools.compare import DEFAULT_FLOOR

    assert DEFAULT_FLOOR == 256 * np.finfo(np.float64).eps
    assert compare(np.array([1.0, 5e-14]), np.array([1.0, 0.0])).ok
    assert not compare(np.array([1.0, 6e-14]), np.array([1.0, 0.0])).ok


def test_stated_tolerance_and_per_element_scale():
    from trace_tools.compare import Tolerance

    e = np.array([1.0, 1e-20])
    a = np.array([1.0, 1e-20 * (1 + 1e-6)])
    assert compare(a, e).ok  # the second element is below the floor of the array's scale
    assert not compare(a, Tolerance(e, floor=0.0, scale=np.abs(e), reason="independent points")).ok
    loose = Tolerance(np.array([1.0, 0.0]), floor=1e-8, reason="ill-conditioned")
    assert compare(np.array([1.0, 5e-9]), loose).ok
    assert not compare(np.array([1.0, 5e-8]), loose).ok


def test_reported_errors():
    # relative error over the elements checked relatively; error over scale over all of them
    out = compare(np.array([2.0, 0.5 * (1 + 1e-12)]), np.array([2.0, 0.5]))
    assert out.ok and out.max_rel_err == pytest.approx(1e-12, rel=1e-3, abs=0)
    assert out.max_scaled_err == pytest.approx(2.5e-13, rel=1e-3, abs=0)
    # an element below floor / rtol of the scale is checked against the floor, not relatively
    out = compare(np.array([2.0, 1e-5 * (1 + 1e-9)]), np.array([2.0, 1e-5]))
    assert out.ok and out.max_rel_err == 0.0


def test_registry_requires_a_reason_for_a_larger_floor():
    from trace_tools.registry import RegistryError, parity

    with pytest.raises(RegistryError):
        parity("x.y", port="a.b", floor=1e-10)
