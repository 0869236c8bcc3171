# SPDX-License-Identifier: GPL-2.0-or-later
"""Replay of recorded ``eryx.models.OnePhononBrillouin`` constructions, and the gradchecks of its springs.

The recorded ``Id`` is compared with the port's, each point on the scale of its own k-vector as for
``OnePhonon.apply_disorder`` (:func:`.onephonon.class_scale`). The nested ``OnePhonon`` (attribute
``phonon``) is eryx's object: its own recorded calls are replayed by the OnePhonon adapter.
"""

from __future__ import annotations

import numpy as np
import torch

from eryx_port.models import OnePhononBrillouin
from trace_tools.compare import Tolerance
from trace_tools.registry import gradcheck, parity

from ._recorded import structure_paths
from .onephonon import class_scale, kvec_class

_INIT = "eryx.models.OnePhononBrillouin.__init__"


def _args(call) -> dict:
    return structure_paths(call.args)


def _zone_classes(port: OnePhononBrillouin) -> np.ndarray:
    """k-vector index of every point of ``Id`` (C order), as the full grid pairs them."""
    ph = port.phonon
    sampling = tuple(int(s[2]) for s in (ph.hsampling, ph.ksampling, ph.lsampling))
    where_k = kvec_class(tuple(ph.map_shape), sampling).reshape(ph.map_shape)
    z = port._zone()
    return where_k[z, z, z].reshape(-1)


@parity(_INIT, port="eryx_port.models.OnePhononBrillouin.__init__")
def _(call):
    port = OnePhononBrillouin(**_args(call))
    actual = port.Id.detach().cpu().numpy()
    expected = np.asarray(call.attrs_written["Id"], dtype=np.float64)
    where_k = _zone_classes(port)
    scale = class_scale(expected.reshape(-1), where_k).reshape(expected.shape)
    return actual, Tolerance(expected, floor=0.0, scale=scale, reason="each point on its k-vector's scale")


@gradcheck(_INIT, inputs=("gamma_intra", "gamma_inter"))
def _(call, name):
    """``Id`` (finite points, over its largest value, 3 random projections) as a function of one spring constant, N = 2."""
    args = _args(call)
    args.update(N=2, model="gnm")
    port = OnePhononBrillouin(**args)
    ref = port.Id.detach().reshape(-1)
    keep = ~ref.isnan()
    scale = ref[keep].abs().max()
    gen = torch.Generator().manual_seed(0)
    proj = torch.rand(3, int(keep.sum()), generator=gen, dtype=torch.float64)
    x0 = torch.tensor(float(args[name]), dtype=torch.float64, requires_grad=True)

    def fn(x):
        return proj @ (port.update(**{name: x}).reshape(-1)[keep] / scale)

    # soft modes amplify the map's rounding (see the OnePhonon gradcheck): a step of 1e-4
    return fn, (x0,), {"eps": 1e-4, "reason": "soft modes amplify the map's rounding; step 1e-4 as OnePhonon's gradcheck"}
