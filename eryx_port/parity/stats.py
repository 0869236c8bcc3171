# SPDX-License-Identifier: GPL-2.0-or-later
"""Replay of recorded ``eryx.stats`` calls on :mod:`eryx_port.stats`, and their gradchecks.

The gradchecks vary a few valid voxels of each input map (the others fixed), and check the
correlations that are defined (a shell or dq group without two valid voxels is NaN, as in eryx).
"""

from __future__ import annotations

import numpy as np
import torch

from eryx_port import stats
from trace_tools.registry import gradcheck, parity

from .outcome import recorded_outcome


@parity("eryx.stats.compute_cc", port="eryx_port.stats.compute_cc")
def _(call):
    a = call.args
    return recorded_outcome(call, lambda: stats.compute_cc(a["arr1"], a["arr2"], mask=a.get("mask")))


@parity("eryx.stats.compute_cc_by_shell", port="eryx_port.stats.compute_cc_by_shell")
def _(call):
    a = call.args
    return recorded_outcome(call, lambda: stats.compute_cc_by_shell(
        a["arr1"], a["arr2"], a["res_map"], mask=a.get("mask"), n_shells=a.get("n_shells", 10)))


@parity("eryx.stats.compute_cc_by_dq", port="eryx_port.stats.compute_cc_by_dq")
def _(call):
    a = call.args
    return recorded_outcome(call, lambda: stats.compute_cc_by_dq(a["arr1"], a["arr2"], a["dq_map"], mask=a.get("mask")))


_N_VARIED = 6


def _varied(call, name: str, port, pick_output):
    """gradcheck of ``port`` in ``_N_VARIED`` valid voxels of input ``name`` (the recorded values elsewhere)."""
    a = dict(call.args)
    base = torch.as_tensor(np.array(a[name], dtype=np.float64))
    other = np.asarray(a["arr2" if name == "arr1" else "arr1"], dtype=np.float64)
    both = np.concatenate([np.atleast_2d(np.asarray(a[name], dtype=np.float64)), np.atleast_2d(other)])
    valid_cols = np.flatnonzero(~np.isnan(both.sum(axis=0)))
    flat = base.reshape(-1)
    n_cols = both.shape[1]
    cols = valid_cols[np.linspace(0, len(valid_cols) - 1, min(_N_VARIED, len(valid_cols))).round().astype(int)]
    pos = torch.as_tensor(cols)  # voxels of the first row
    x0 = flat[pos].clone()
    assert flat.numel() % n_cols == 0

    def fn(x):
        values = flat.index_put((pos,), x).reshape(base.shape)
        return pick_output(port({**a, name: values}))

    out = pick_output(port({**a, name: base}))
    if not torch.isfinite(out).all():
        raise ValueError("the checked correlations are not finite")
    return fn, (x0.requires_grad_(True),)


def _finite_part(call, port, index):
    result = port(dict(call.args))
    values = result[index] if index is not None else result
    keep = torch.isfinite(values.detach())
    return lambda out: (out[index] if index is not None else out)[keep]


def _cc(a):
    return stats.compute_cc(a["arr1"], a["arr2"], mask=a.get("mask"))


def _shell(a):
    return stats.compute_cc_by_shell(a["arr1"], a["arr2"], a["res_map"], mask=a.get("mask"), n_shells=a.get("n_shells", 10))


def _dq(a):
    return stats.compute_cc_by_dq(a["arr1"], a["arr2"], a["dq_map"], mask=a.get("mask"))


@gradcheck("eryx.stats.compute_cc", inputs=("arr1", "arr2"))
def _(call, name):
    return _varied(call, name, _cc, _finite_part(call, _cc, None))


@gradcheck("eryx.stats.compute_cc_by_shell", inputs=("arr1", "arr2"))
def _(call, name):
    return _varied(call, name, _shell, _finite_part(call, _shell, 1))


@gradcheck("eryx.stats.compute_cc_by_dq", inputs=("arr1", "arr2"))
def _(call, name):
    return _varied(call, name, _dq, _finite_part(call, _dq, 1))
