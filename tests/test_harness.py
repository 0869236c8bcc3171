"""The parity harness itself: which cases it collects, and what it does with an unported function."""

import pytest

import trace_tools.pytest_plugin as plugin
from trace_tools.store import load_function


def _marks(param):
    return {m.name: m for m in param.marks}


def test_every_recorded_call_of_every_listed_function_is_a_case():
    params = plugin.parity_params()
    expected = sum(len(load_function(name).calls) for name in plugin.listed_functions() if load_function(name))
    assert len(params) == expected > 0
    ids = [p.id for p in params]
    assert len(set(ids)) == len(ids)
    assert "eryx.scatter.structure_factors[7n2h-s3-call0]" in ids


def test_unported_function_is_collected_as_expected_failure(monkeypatch):
    monkeypatch.setattr(plugin, "load_registry", lambda: {})
    params = plugin.parity_params()
    assert params, "the listed functions still give cases without a port"
    for p in params:
        xfail = _marks(p)["xfail"]
        assert xfail.kwargs["reason"] == "not ported" and xfail.kwargs["raises"] is plugin.NotPorted
    assert plugin.gradcheck_params() == []


def test_unported_function_raises_not_ported(monkeypatch):
    monkeypatch.setattr(plugin, "load_registry", lambda: {})

    class Request:
        class node:
            user_properties = []

    with pytest.raises(plugin.NotPorted, match="not ported"):
        plugin.run_parity(Request, "eryx.scatter.structure_factors", "7n2h-s3-call0")

