# SPDX-License-Identifier: GPL-2.0-or-later
"""AtomicModel.extract_frame, Crystal construction and parse_asu_condition, checked without eryx."""

import gemmi
import numpy as np
import pytest
import torch

from eryx_port import map_utils
from eryx_port.pdb import AtomicModel, Crystal


def test_extract_frame_selects_and_expands_models(pdb_file):
    path = pdb_file("7n2h_p1.pdb")  # 3 models (the ASUs of P 31) in one file
    st = gemmi.read_pdb(str(path))
    model = AtomicModel(path, expand_p1=False, frame=-1)
    n_atoms = model.xyz.shape[1]
    assert model.n_conf == 3 and model.xyz.shape == (3, n_atoms, 3) and len(model.elements) == 3

    model.extract_frame(frame=1)
    assert model.n_conf == 1 and model.xyz.shape == (1, n_atoms, 3)
    first_atom = st[1][0][0][0].pos
    np.testing.assert_allclose(model.xyz[0, 0].numpy(), first_atom.tolist())

    model.extract_frame(expand_p1=True, frame=2)  # model 2 copied by the 3 operators
    assert model.xyz.shape == (3, n_atoms, 3)
    assert model.ff_a.shape == (3, n_atoms, 4) and len(model.elements) == 3
    direct = AtomicModel(path, expand_p1=True, frame=2)
    torch.testing.assert_close(model.xyz, direct.xyz)

    with pytest.raises(ValueError, match="out of range"):
        model.extract_frame(frame=3)
    with pytest.raises(TypeError):
        model.extract_frame(frame=1.0)


def test_crystal_construction_and_extent(pdb_file):
    model = AtomicModel(pdb_file("5zck.pdb"), expand_p1=True)
    crystal = Crystal(model)
    assert crystal.model is model
    assert (crystal.nx, crystal.ny, crystal.nz, crystal.n_cell) == (0, 0, 0, 1)
    crystal.supercell_extent(nx=2, ny=0, nz=1)
    assert crystal.n_cell == 15
    assert crystal.xrange.tolist() == [-2, -1, 0, 1, 2] and crystal.yrange.tolist() == [0]
    assert crystal.zrange.tolist() == [-1, 0, 1]
    assert crystal.cell_indices().shape == (15, 3)
    with pytest.raises(ValueError, match="non-negative integer"):
        crystal.supercell_extent(nx=-1)


def test_parse_asu_condition_as_eryx_writes_it():
    cases = {
        "h>=0 and k>=0 and l>=0": "(h>=0) & (k>=0) & (l>=0)",
        "l>0 or (l=0 and (h>0 or (h=0 and k>=0)))": "(l>0) | ((l==0) & ((h>0) | ((h==0) & (k>=0))))",
        "h>=0 and ((l>=h and k>h) or (l=h and k=h))": "(h>=0) & (((l>=h) & (k>h)) | ((l==h) & (k==h)))",
        "h>=k and k>=0 and (h>k or l>=0)": "(h>=k) & (k>=0) & ((h>k) | (l>=0))",
    }
    for gemmi_text, eryx_text in cases.items():
        assert map_utils.parse_asu_condition(gemmi_text) == eryx_text
    # every condition gemmi writes becomes balanced text with only NumPy operators
    for sg in gemmi.spacegroup_table():
        text = map_utils.parse_asu_condition(gemmi.ReciprocalAsu(sg).condition_str())
        assert text.count("(") == text.count(")")
        assert " and " not in text and " or " not in text and "===" not in text
    with pytest.raises(TypeError):
        map_utils.parse_asu_condition(None)
