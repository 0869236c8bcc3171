"""eryx_port.compat: eryx's NumPy-facing API over the port.

Recorded eryx calls of module-level functions are replayed through the facade (the registry's own
replay, with the port function swapped for its facade, which must be the one called), so the facade
cannot drift from the port; the rest checks NumPy in and out, classes, and the ``eryx`` aliases.
"""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest
import torch

import eryx_port.compat as compat
from trace_tools.compare import compare
from trace_tools.pytest_plugin import get_call, listed_functions
from trace_tools.registry import load_registry
from trace_tools.store import load_function

from structures import structure

_CASES_PER_FUNCTION = 3


def _facade_cases() -> list:
    registry = load_registry()
    params = []
    for function in listed_functions():
        package, module, *rest = function.split(".")
        if len(rest) != 1 or module not in compat.MODULES or function not in registry:
            continue  # methods go through the facade classes, tested below and by eryx's own tests
        trace = load_function(function)
        if trace is None:
            continue
        for call in [c for c in trace.calls if c.exception is None][:_CASES_PER_FUNCTION]:
            params.append(pytest.param(function, call.case_id, id=f"{function}[{call.case_id}]"))
    return params


@pytest.mark.parametrize("function,case", _facade_cases())
def test_recorded_calls_through_facade(monkeypatch, function, case):
    _, module, name = function.split(".")
    port_module = importlib.import_module(f"eryx_port.{module}")
    facade = getattr(importlib.import_module(f"eryx_port.compat.{module}"), name)
    seen = []

    def counted(*args, **kwargs):
        seen.append(True)
        result = facade(*_as_numpy(args), **_as_numpy(kwargs))
        _assert_no_tensor(result, function)
        return result

    monkeypatch.setattr(port_module, name, counted)
    entry = load_registry()[function]
    actual, expected = entry.replay(get_call(function, case))
    assert seen, f"the replay of {function} did not call eryx_port.{module}.{name}: the facade was not exercised"
    outcome = compare(actual, expected, rtol=entry.rtol, atol=entry.atol, floor=entry.floor)
    assert outcome.ok, f"{function}[{case}] through the facade differs from eryx: {outcome.report}"


def _as_numpy(value):
    """The adapters hand the port what the trace holds; the facade's callers hand it NumPy."""
    if isinstance(value, torch.Tensor):
        return value.detach().numpy()
    if isinstance(value, tuple):
        return tuple(_as_numpy(v) for v in value)
    if isinstance(value, list):
        return [_as_numpy(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_numpy(v) for k, v in value.items()}
    return value


def _assert_no_tensor(value, where: str):
    if isinstance(value, torch.Tensor):
        raise AssertionError(f"{where} through the facade returned a tensor")
    if isinstance(value, (tuple, list)):
        for v in value:
            _assert_no_tensor(v, where)
    if isinstance(value, dict):
        for v in value.values():
            _assert_no_tensor(v, where)


def test_every_listed_module_function_has_facade_cases():
    covered = {p.values[0] for p in _facade_cases()}
    registry = load_registry()
    wanted = {f for f in listed_functions() if f.count(".") == 2 and f.split(".")[1] in compat.MODULES and f in registry}
    assert wanted and covered == wanted


def test_arrays_in_and_out_and_gemmi_objects_kept():
    model = compat.pdb.AtomicModel(structure("5zck"), expand_p1=True)
    assert isinstance(model.xyz, np.ndarray) and model.xyz.dtype == np.float64 and model.xyz.shape[-1] == 3
    assert isinstance(model.A_inv, np.ndarray)
    assert type(model.elements[0][0]).__module__.startswith("gemmi")
    q, shape = compat.map_utils.generate_grid(model.A_inv, (-2, 2, 2), (-1, 1, 2), (0, 1, 2))
    assert isinstance(q, np.ndarray) and q.shape == (int(np.prod(shape)), 3)
    # mixing with NumPy works (the reason for the facade: ndarray - Tensor raises TypeError)
    assert np.all(np.isfinite(q - q.mean(axis=0)))
    sf = compat.scatter.structure_factors(q, model.xyz[0], model.ff_a[0], model.ff_b[0], model.ff_c[0], U=None)
    assert isinstance(sf, np.ndarray) and np.iscomplexobj(sf) and np.abs(sf).max() > 0


def test_float32_inputs_stay_float32():
    model = compat.pdb.AtomicModel(structure("5zck"), expand_p1=True)
    q, _ = compat.map_utils.generate_grid(model.A_inv, (-1, 1, 2), (-1, 1, 2), (-1, 1, 2))
    q32 = q.astype(np.float32)
    ff = compat.scatter.compute_form_factors(q32, model.ff_a[0].astype(np.float32), model.ff_b[0].astype(np.float32),
                                             model.ff_c[0].astype(np.float32))
    assert ff.dtype == np.float32
    ff64 = compat.scatter.compute_form_factors(q, model.ff_a[0], model.ff_b[0], model.ff_c[0])
    np.testing.assert_allclose(ff, ff64, rtol=1e-5)


def test_onephonon_through_facade_matches_port():
    from eryx_port.models import OnePhonon

    args = (structure("5zck"), (-1, 1, 2), (-1, 1, 2), (-1, 1, 2))
    facade = compat.models.OnePhonon(*args, gnm_cutoff=4.0, gamma_intra=1.0, gamma_inter=1.0)
    port = OnePhonon(*args, gnm_cutoff=4.0, gamma_intra=1.0, gamma_inter=1.0)
    Id = facade.apply_disorder(use_data_adp=True)
    assert isinstance(Id, np.ndarray) and np.isfinite(Id).sum() > 0
    expected = port.apply_disorder(use_data_adp=True).numpy()
    np.testing.assert_array_equal(np.isnan(Id), np.isnan(expected))
    np.testing.assert_allclose(Id[np.isfinite(Id)], expected[np.isfinite(expected)], rtol=1e-12)
    assert isinstance(facade.hkl_grid, np.ndarray) and isinstance(facade.map_shape, tuple | list)
    # facade objects passed back into the facade are unwrapped
    crystal = compat.pdb.Crystal(facade.model)
    assert isinstance(crystal.get_asu_xyz(0, (0, 0, 0)), np.ndarray)


def test_install_aliases_eryx_and_uninstall_removes_them():
    assert "eryx" not in sys.modules or not sys.modules["eryx"].__name__.startswith("eryx_port")
    compat.install()
    try:
        import eryx.models  # noqa: F401  (the alias)
        from eryx.models import compute_cc, generate_grid, structure_factors  # noqa: F401  (eryx re-exports)

        assert sys.modules["eryx.models"] is compat.models
        assert sys.modules["eryx"].map_utils is compat.map_utils
    finally:
        compat.uninstall()
    assert "eryx" not in sys.modules and "eryx.models" not in sys.modules


def test_a_name_the_port_lacks_is_refused_at_import():
    import types

    from eryx_port.compat._bridge import export

    with pytest.raises(ImportError, match="eryx.demo.later has no port in demo_port"):
        export({"__name__": "demo"}, types.ModuleType("demo_port"), ["later"], "eryx.demo")
