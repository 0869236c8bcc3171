"""Every recorded NumPy call replayed against the port, and gradchecks of differentiable inputs.

Cases are generated from traces/functions.toml, traces/data and the port registry
(eryx_port.parity); see trace_tools/pytest_plugin.py.
"""

import pytest

from trace_tools.pytest_plugin import gradcheck_params, parity_params, run_gradcheck, run_parity


@pytest.mark.parametrize("function,case", parity_params())
def test_parity(request, function, case):
    run_parity(request, function, case)


@pytest.mark.parametrize("function,name,case", gradcheck_params())
def test_gradcheck(request, function, name, case):
    run_gradcheck(request, function, name, case)
