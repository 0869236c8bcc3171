# SPDX-License-Identifier: GPL-2.0-or-later
"""AtomicModel, Crystal and the header helpers of eryx_port.pdb, checked independently of eryx.

Parity with eryx itself is checked by the recorded traces (tests/test_parity.py).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from eryx_port.pdb import (
    AtomicModel,
    Crystal,
    extract_sym_ops,
    extract_transformations,
    get_unit_cell_axes,
    sym_str_as_matrix,
)
from structures import structure




# ---------------------------------------------------------------- header helpers


def test_sym_str_as_matrix_keeps_rotation_signs():
    expected = torch.tensor([[0.0, -1.0, 0.0], [1.0, -1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    assert torch.equal(sym_str_as_matrix("-Y,X-Y,Z+1/3"), expected)
    assert torch.equal(sym_str_as_matrix("-X+1/2,-Y,Z+1/2"), torch.diag(torch.tensor([-1.0, -1.0, 1.0], dtype=torch.float64)))


@pytest.mark.parametrize("bad", ["X,Y", "X,Y,Z,X"])
def test_sym_str_as_matrix_rejects_malformed(bad):
    with pytest.raises(ValueError, match="three comma-separated"):
        sym_str_as_matrix(bad)


def test_header_operators_of_p212121():
    ops = extract_sym_ops(structure("5zck"))
    trans = extract_transformations(structure("5zck"))
    assert sorted(ops) == [0, 1, 2, 3] and sorted(trans) == [0, 1, 2, 3]
    cell = np.array([4.813, 17.151, 29.564])
    for k in ops:
        rot, t = trans[k][:, :3], trans[k][:, 3]
        # P 21 21 21: diagonal +-1 rotations; header rotation equals the 555 operator, translations
        # are half cell lengths (in Angstrom) or zero
        assert torch.equal(rot, ops[k])
        assert torch.equal(rot.abs(), torch.eye(3, dtype=torch.float64))
        half = t.numpy() / (cell / 2)
        np.testing.assert_allclose(half, np.round(half), atol=1e-3)
    assert torch.equal(ops[0], torch.eye(3, dtype=torch.float64))


def _angle(u, v):
    return torch.rad2deg(torch.arccos((u @ v) / (u.norm() * v.norm())))


@pytest.mark.parametrize("cell", [(27.2, 27.2, 4.83, 90.0, 90.0, 120.0), (14.002, 4.879, 15.1, 75.23, 75.88, 78.89)])
def test_unit_cell_axes_have_the_cell_lengths_and_angles(cell):
    axes = get_unit_cell_axes(np.array(cell))
    a, b, c = axes
    torch.testing.assert_close(axes.norm(dim=1), torch.tensor(cell[:3], dtype=torch.float64), rtol=1e-12, atol=0)
    got = torch.stack([_angle(b, c), _angle(a, c), _angle(a, b)])
    torch.testing.assert_close(got, torch.tensor(cell[3:], dtype=torch.float64), rtol=1e-12, atol=1e-10)
    assert a[1] == 0 and a[2] == 0 and b[2] == 0  # a along x, b in the xy plane


def test_unit_cell_axes_gradient_and_bad_shape():
    cell = torch.tensor([27.2, 27.2, 4.83, 90.0, 90.0, 120.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(get_unit_cell_axes, (cell,))
    with pytest.raises(ValueError, match="6 parameters"):
        get_unit_cell_axes([1.0, 2.0, 3.0])


# ---------------------------------------------------------------- AtomicModel


def test_model_shapes_with_and_without_expansion():
    path = structure("5zck")
    asu = AtomicModel(path)
    full = AtomicModel(path, expand_p1=True)
    assert asu.n_asu == full.n_asu == 4 and asu.space_group == "P 21 21 21"
    assert asu.xyz.shape == (1, 28, 3) and full.xyz.shape == (4, 28, 3)
    assert asu.adp.shape == (1, 28) and full.adp.shape == (4, 28)
    assert full.ff_a.shape == full.ff_b.shape == (4, 28, 4) and full.ff_c.shape == (4, 28)
    assert len(full.elements) == 4 and all(len(group) == 28 for group in full.elements)
    assert full.masses.shape == (4, 28) and asu.xyz.dtype == torch.float64
    # the identity operator moves the first ASU rigidly (by whole cells, when its centre lies outside)
    shift = full.xyz[0] - asu.xyz[0]
    torch.testing.assert_close(shift, shift[:1].expand_as(shift), rtol=0, atol=1e-12)
    frac = shift[0] @ asu.A_inv.T
    torch.testing.assert_close(frac, frac.round(), rtol=0, atol=1e-12)
    # A_inv fractionalises: the cell axes become the unit vectors
    torch.testing.assert_close(asu.A_inv @ asu.unit_cell_axes.T, torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-12)


def test_form_factors_and_masses_follow_the_elements():
    model = AtomicModel(structure("5zck"))
    symbols = [el.name for el in model.elements[0]]
    assert set(symbols) <= {"C", "N", "O", "S"} and "C" in symbols
    carbon = symbols.index("C")
    assert model.masses[0, carbon].item() == pytest.approx(12.011, abs=1e-3)
    # IT92 at q = 0 gives the number of electrons
    f0 = model.ff_a.sum(-1) + model.ff_c
    assert f0[0, carbon].item() == pytest.approx(6.0, abs=0.01)


def test_cleaning_removes_hydrogens_and_waters():
    clean = AtomicModel(structure("6o2h_clean"))
    raw = AtomicModel(structure("6o2h_clean"), clean_pdb=False)
    assert clean.xyz.shape[1] == 1001 and raw.xyz.shape[1] == 2229
    assert all(el.name != "H" for el in clean.elements[0])
    water = AtomicModel(structure("2ol9"))
    assert water.xyz.shape[1] == 51  # the 5 HOH oxygens of the file are gone


def test_all_frames_and_flatten():
    model = AtomicModel(structure("5zck_p1"), frame=-1)
    assert model.n_conf == 4 and model.xyz.shape == (4, 28, 3) and model.adp.shape == (4, 28)
    model.flatten_model()
    assert model.xyz.shape == (112, 3) and model.ff_a.shape == (112, 4) and model.ff_c.shape == (112,)
    assert len(model.elements) == 112 and model.masses.shape == (112,)
    assert model.adp.shape == (4, 28)  # eryx leaves adp alone


@pytest.mark.parametrize("name", ["5zck", "7n2h"])
def test_expanded_asu_file_matches_p1_file_up_to_lattice_translations(name):
    """ASU i of the expanded model is copy i of the _p1 file (one MODEL per ASU), moved by whole cells."""
    expanded = AtomicModel(structure(name), expand_p1=True)
    p1 = AtomicModel(structure(f"{name}_p1"), frame=-1)
    assert expanded.xyz.shape == p1.xyz.shape
    frac = (expanded.xyz - p1.xyz) @ expanded.A_inv.T
    lattice = frac.round()
    # one whole-cell shift per ASU, and the remainder is the files' 3-decimal rounding
    assert torch.equal(lattice, lattice[:, :1].expand_as(lattice))
    residual = (frac - lattice) @ expanded.unit_cell_axes
    assert residual.norm(dim=-1).max() < 3e-3


def test_expansion_is_differentiable_and_vectorised_over_operators():
    model = AtomicModel(structure("7n2h"))
    xyz = model.xyz[0, :5].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(model._get_xyz_asus, (xyz,))
    out = model._get_xyz_asus(xyz)
    for k, op in model.transformations.items():  # each copy is R x + t up to a whole shift vector
        diff = out[k] - (xyz @ op[:, :3].T + op[:, 3])
        assert torch.allclose(diff, diff[:1].expand_as(diff), atol=1e-12)


def test_float32_and_gemmi_fallback_operators():
    model = AtomicModel(structure("histidine"), expand_p1=True, dtype=torch.float32)
    assert model.xyz.dtype == torch.float32 and model.xyz.shape == (4, 11, 3)
    # no REMARK 290 in this file: operators come from the space group, as 3x4 [R | t/den]
    assert model.n_asu == 4 and model.sym_ops[1].shape == (3, 4)


@pytest.mark.parametrize("name", ["5zck", "7n2h"])
def test_mmcif_gets_the_operators_a_pdb_header_would_hold(name, tmp_path):
    """gemmi's space-group operators, made Cartesian, are the REMARK 290 ones (possibly in another order)."""
    import gemmi

    st = gemmi.read_pdb(structure(name))
    st.setup_entities()
    cif = tmp_path / f"{name}.cif"
    st.make_mmcif_document().write_file(str(cif))
    from_cif = AtomicModel(cif, expand_p1=True)
    from_pdb = AtomicModel(structure(name), expand_p1=True)
    assert from_cif.n_asu == from_pdb.n_asu
    for i in range(from_cif.n_asu):
        dist = [(from_cif.transformations[i] - from_pdb.transformations[j]).abs().max() for j in range(from_pdb.n_asu)]
        j = int(torch.stack(dist).argmin())
        assert dist[j] < 1e-5  # SMTRY rows carry 6 decimals
        assert torch.equal(from_cif.sym_ops[i], from_pdb.sym_ops[j])
        torch.testing.assert_close(from_cif.xyz[i], from_pdb.xyz[j], rtol=0, atol=1e-4)


# ---------------------------------------------------------------- bad input


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        AtomicModel("/nonexistent/structure.pdb")


def test_file_without_cell(tmp_path):
    path = tmp_path / "nocell.pdb"
    path.write_text("ATOM      1  N   GLY A   1       1.000   2.000   3.000  1.00 10.00           N\nEND\n")
    with pytest.raises(ValueError, match="no unit cell"):
        AtomicModel(path)


def test_binary_file(tmp_path):
    path = tmp_path / "garbage.pdb"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ValueError, match="garbage.pdb"):
        AtomicModel(path)


def test_no_atoms_left(tmp_path):
    path = tmp_path / "water.pdb"
    path.write_text(
        "CRYST1   10.000   10.000   10.000  90.00  90.00  90.00 P 1           1\n"
        "HETATM    1  O   HOH A   1       1.000   2.000   3.000  1.00 10.00           O\nEND\n"
    )
    with pytest.raises(ValueError, match="no atoms left"):
        AtomicModel(path)


def test_frame_out_of_range():
    with pytest.raises(ValueError, match="frame 3 is out of range"):
        AtomicModel(structure("5zck"), frame=3)


# ---------------------------------------------------------------- Crystal


def test_cell_numbering_follows_nested_loops():
    crystal = Crystal(AtomicModel(structure("7n2h")))
    crystal.supercell_extent(nx=1, ny=2, nz=0)
    order = list(itertools.product(range(-1, 2), range(-2, 3), range(1)))
    assert crystal.n_cell == len(order) == 15
    assert [tuple(crystal.id_to_hkl(i)) for i in range(crystal.n_cell)] == order
    assert [crystal.hkl_to_id(list(hkl)) for hkl in order] == list(range(15))
    assert crystal.cell_indices().tolist() == [list(hkl) for hkl in order]
    origins = crystal.cell_origins()
    for i, hkl in enumerate(order):
        expected = torch.tensor(hkl, dtype=torch.float64) @ crystal.model.unit_cell_axes
        torch.testing.assert_close(origins[i], expected, rtol=0, atol=1e-12)
        assert torch.equal(crystal.get_unitcell_origin(list(hkl)), origins[i])
    assert crystal.hkl_to_id() == 7 and torch.equal(crystal.get_unitcell_origin(), torch.zeros(3, dtype=torch.float64))


def test_crystal_index_errors():
    crystal = Crystal(AtomicModel(structure("5zck")))
    crystal.supercell_extent(nx=1, ny=1, nz=1)
    with pytest.raises(ValueError, match="outside the supercell"):
        crystal.hkl_to_id([2, 0, 0])
    with pytest.raises(ValueError, match="out of range"):
        crystal.id_to_hkl(27)
    with pytest.raises(ValueError, match="non-negative"):
        crystal.supercell_extent(nx=-1)


def test_asu_placement_in_a_neighbour_cell():
    model = AtomicModel(structure("5zck"), expand_p1=True)
    crystal = Crystal(model)
    crystal.supercell_extent(nx=1, ny=1, nz=1)
    shift = model.unit_cell_axes[0] - model.unit_cell_axes[2]
    for asu in range(model.n_asu):
        torch.testing.assert_close(crystal.get_asu_xyz(asu, [1, 0, -1]), model.xyz[asu] + shift, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="asu_id 4"):
        crystal.get_asu_xyz(4)
