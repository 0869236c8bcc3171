# SPDX-License-Identifier: GPL-2.0-or-later
"""GaussianNetworkModel: contact list, Hessian, K(k) and its pseudo-inverse, checked without eryx.

Parity with eryx's own outputs is checked by the recorded traces (tests/test_parity.py).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from eryx_port.gnm import Contacts, contacts_from_neighbor_lists
from eryx_port.pdb import AtomicModel, GaussianNetworkModel
from structures import structure




_MODELS: dict[str, AtomicModel] = {}


def model(name: str) -> AtomicModel:
    if name not in _MODELS:
        _MODELS[name] = AtomicModel(structure(name), expand_p1=True)
    return _MODELS[name]


def gnm(name: str, cutoff: float, intra=1.0, inter=0.5) -> GaussianNetworkModel:
    return GaussianNetworkModel.from_model(model(name), cutoff, intra, inter)


def brute_force_pairs(g: GaussianNetworkModel, cutoff: float) -> set:
    """All (asu_i, atom_i, cell, asu_j, atom_j) within the cutoff, by broadcasting every atom pair of every cell."""
    axes = g.crystal.model.unit_cell_axes.numpy()
    asus = g.crystal.asu_xyz_reference().numpy()  # (n_asu, n_atoms, 3)
    hkl = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=float)
    moved = asus[None] + (hkl @ axes)[:, None, None, :]  # (27, n_asu, n_atoms, 3)
    d = np.linalg.norm(asus[:, :, None, None, None, :] - moved[None, None], axis=-1)  # (a, i, cell, b, j)
    gap = np.abs(d - cutoff).min()
    assert gap > 1e-9, f"a pair sits {gap:.1e} from the cutoff: brute force and k-d tree could disagree on rounding"
    close = d <= cutoff
    n_asu, n_at = asus.shape[:2]
    a, i = np.meshgrid(np.arange(n_asu), np.arange(n_at), indexing="ij")
    close[a, i, 13, a, i] = False  # an atom is not its own neighbour
    return set(map(tuple, np.argwhere(close).tolist()))


def contact_set(c: Contacts) -> set:
    return set(map(tuple, torch.stack(list(c), dim=1).tolist()))


@pytest.mark.parametrize("name,cutoff", [("5zck", 4.0), ("7n2h", 5.0)])
def test_contacts_equal_brute_force_and_hessian_is_the_kirchhoff_matrix(name, cutoff):
    g = gnm(name, cutoff, intra=1.7, inter=0.3)
    pairs = brute_force_pairs(g, cutoff)
    assert contact_set(g.contacts) == pairs
    # Kirchhoff matrix assembled from the brute-force pairs
    n_asu, n_at = g.n_asu, g.n_atoms_per_asu
    expected = np.zeros((n_asu, n_at, 27, n_asu, n_at))
    for a, i, cell, b, j in pairs:
        spring = 1.7 if (cell == 13 and a == b) else 0.3
        expected[a, i, cell, b, j] = -spring
        expected[a, i, 13, a, i] += spring
    hessian = g.compute_hessian()
    assert hessian.dtype == torch.complex128 and hessian.shape == expected.shape
    np.testing.assert_allclose(hessian.real.numpy(), expected, rtol=1e-13, atol=1e-13)
    assert torch.count_nonzero(hessian.imag) == 0


# Pair counts of eryx 1.0 (commit cc96863), obtained by running eryx.pdb.GaussianNetworkModel in the
# reference venv and counting the entries of asu_neighbors minus one self-pair per atom.
ERYX_PAIR_COUNTS = {
    ("5zck", 4.0): 1328, ("5zck", 5.0): 2840,
    ("7n2h", 4.0): 2358, ("7n2h", 5.0): 5294,
    ("2ol9", 4.0): 670, ("2ol9", 5.0): 1436,
}


@pytest.mark.parametrize("name,cutoff", sorted(ERYX_PAIR_COUNTS))
def test_pair_counts_match_eryx(name, cutoff):
    g = gnm(name, cutoff)
    assert g.contacts.n_contacts == ERYX_PAIR_COUNTS[name, cutoff]
    # the nested lists hold the same pairs, plus each atom once with itself
    nested = g.asu_neighbors
    assert len(nested) == g.n_asu and len(nested[0]) == 27 and len(nested[0][0][0]) == g.n_atoms_per_asu
    assert sum(len(x) for by_cell in nested for by_asu in by_cell for by_atom in by_asu for x in by_atom) == (
        g.contacts.n_contacts + g.n_asu * g.n_atoms_per_asu
    )
    back = contacts_from_neighbor_lists(nested, g.id_cell_ref)
    assert all(torch.equal(x, y) for x, y in zip(back, g.contacts))


def test_hessian_rows_sum_to_zero_and_pairs_are_symmetric():
    g = gnm("7n2h", 4.0, intra=2.0, inter=0.5)
    h = g.compute_hessian().real
    torch.testing.assert_close(h.sum(dim=(2, 3, 4)), torch.zeros(g.n_asu, g.n_atoms_per_asu, dtype=torch.float64))
    # H[a, i, cell, b, j] == H[b, j, opposite cell, a, i]
    opposite = torch.tensor([g.crystal.hkl_to_id([-x for x in g.crystal.id_to_hkl(c)]) for c in range(27)])
    assert torch.equal(h, h[:, :, opposite].permute(3, 4, 2, 0, 1))
    off, diag = g.hessian_contacts()
    assert off.shape == (g.contacts.n_contacts,) and diag.shape == (g.n_asu, g.n_atoms_per_asu)
    assert torch.all(off < 0)


def test_gamma_intra_only_inside_each_asu_of_the_reference_cell():
    g = gnm("5zck", 4.0, intra=3.0, inter=0.25)
    assert g.gamma.shape == (27, 4, 4)
    mask = torch.zeros(27, 4, 4, dtype=torch.bool)
    mask[13] = torch.eye(4, dtype=torch.bool)
    assert torch.all(g.gamma[mask] == 3.0) and torch.all(g.gamma[~mask] == 0.25)


def test_K_from_dense_hessian_and_from_contacts_agree_and_batch():
    g = gnm("7n2h", 4.0)
    h = g.compute_hessian()
    ks = torch.tensor([[0.1, -0.2, 0.05], [0.0, 0.3, -0.4]], dtype=torch.float64)
    batched = g.compute_K(h, kvec=ks)
    n = g.n_asu * g.n_atoms_per_asu
    assert batched.shape == (2, g.n_asu, g.n_atoms_per_asu, g.n_asu, g.n_atoms_per_asu)
    for b in range(2):
        single = g.compute_K(h, kvec=ks[b])
        torch.testing.assert_close(batched[b], single, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(g.compute_K(None, kvec=ks[b]), single, rtol=1e-12, atol=1e-12)
        flat = single.reshape(n, n)
        torch.testing.assert_close(flat, flat.conj().T, rtol=0, atol=1e-12)  # Hermitian
    # explicit sum over cells with phases exp(i k.r)
    origins = torch.stack([g.crystal.get_unitcell_origin(g.crystal.id_to_hkl(c)) for c in range(27)])
    phases = torch.exp(1j * (origins @ ks[1]))
    explicit = sum(h[:, :, c] * phases[c] for c in range(27))
    torch.testing.assert_close(batched[1], explicit, rtol=1e-12, atol=1e-12)
    # at k = 0 every row sums to zero
    k0 = g.compute_K(h).reshape(n, n)
    torch.testing.assert_close(k0.sum(dim=1).abs(), torch.zeros(n, dtype=torch.float64), rtol=0, atol=1e-12)


def test_Kinv_is_numpys_pseudo_inverse():
    g = gnm("5zck", 4.0, intra=1.0, inter=0.0)  # k = 0 and no inter-ASU springs: singular K, as OnePhonon uses it
    h = g.compute_hessian()
    n = g.n_asu * g.n_atoms_per_asu
    k0 = g.compute_K(h).reshape(n, n).numpy()
    expected = np.linalg.pinv(k0)  # numpy's default cutoff, like eryx
    got = g.compute_Kinv(h, reshape=False).numpy()
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10 * scale)
    assert g.compute_Kinv(h).shape == (g.n_asu, g.n_atoms_per_asu, g.n_asu, g.n_atoms_per_asu)
    # at a generic k with inter-ASU springs K is invertible
    g2 = gnm("5zck", 4.0, intra=1.0, inter=0.7)
    k = torch.tensor([0.2, -0.1, 0.3], dtype=torch.float64)
    K = g2.compute_K(None, kvec=k).reshape(n, n)
    Kinv = g2.compute_Kinv(None, kvec=k, reshape=False)
    torch.testing.assert_close(Kinv @ K, torch.eye(n, dtype=torch.complex128), rtol=0, atol=1e-9)


def _spring_function(output):
    """fn(intra, inter) -> a few entries of ``output(gnm)``, on a GNM of 5zck cut to 4 atoms per ASU."""
    small = AtomicModel(structure("5zck"), expand_p1=True)
    small.xyz = small.xyz[:, :4]
    g = GaussianNetworkModel.from_model(small, 5.0, 1.0, 1.0)

    def fn(intra, inter):
        g.gamma_intra, g.gamma_inter = intra, inter
        g.build_gamma()
        return output(g).reshape(-1)[::37][:8]

    return fn


@pytest.mark.parametrize("inverse", [False, True])
def test_gradients_of_K_with_respect_to_the_springs(inverse):
    k = torch.tensor([0.13, -0.21, 0.07], dtype=torch.float64)
    fn = _spring_function(lambda g: g.compute_Kinv(None, kvec=k) if inverse else g.compute_K(None, kvec=k))
    intra = torch.tensor(1.2, dtype=torch.float64, requires_grad=True)
    inter = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (intra, inter))


def test_dense_hessian_is_differentiable_in_the_springs():
    intra = torch.tensor(1.2, dtype=torch.float64, requires_grad=True)
    inter = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    g = GaussianNetworkModel.from_model(model("5zck"), 4.0, intra, inter)
    assert g.gamma.requires_grad and intra.grad_fn is None  # built from the leaves, not written into them
    fn = _spring_function(lambda g: torch.cat([g.compute_hessian().sum(dim=(1, 3, 4)).reshape(-1), g.hessian_contacts()[1].reshape(-1)]))
    assert torch.autograd.gradcheck(fn, (intra, inter))


def test_lysozyme_contacts_build_without_a_dense_hessian():
    """193l: 8 ASUs x 1001 atoms; the dense Hessian would take 27.7 GB, the contact list a few MB."""
    g = GaussianNetworkModel(structure("193l"), 4.0, 1.0, 1.0)
    assert (g.n_asu, g.n_atoms_per_asu) == (8, 1001)
    # eryx (same counting as ERYX_PAIR_COUNTS): 107544 list entries, 8008 of them self-pairs
    assert g.contacts.n_contacts == 99536
    off, diag = g.hessian_contacts()
    assert off.shape == (99536,) and diag.shape == (8, 1001) and torch.all(diag > 0)
    assert sum(t.numel() * t.element_size() for t in g.contacts) < 5e6
    with pytest.raises(MemoryError, match="27.7 GiB|hessian_contacts"):
        g.compute_hessian()


def test_float32():
    g = GaussianNetworkModel(structure("5zck"), 4.0, 1.0, 0.5, dtype=torch.float32)
    assert g.gamma.dtype == torch.float32 and g.contacts.n_contacts == 1328
    assert g.compute_K(None, kvec=[0.1, 0.0, 0.0]).dtype == torch.complex64


def test_bad_input():
    m = model("5zck")
    with pytest.raises(ValueError, match="positive"):
        GaussianNetworkModel.from_model(m, -1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="cannot carry a gradient"):
        GaussianNetworkModel.from_model(m, torch.tensor(4.0, requires_grad=True), 1.0, 1.0)
    with pytest.raises(TypeError, match="AtomicModel or Crystal"):
        GaussianNetworkModel.from_model("5zck.pdb", 4.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="gamma_inter must be a scalar"):
        GaussianNetworkModel.from_model(m, 4.0, 1.0, [1.0, 2.0])
    g = GaussianNetworkModel.from_model(m, 4.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="kvec"):
        g.compute_K(None, kvec=[0.1, 0.2])
    with pytest.raises(ValueError, match="hessian must have shape"):
        g.compute_K(torch.zeros(4, 28, 26, 4, 28, dtype=torch.complex128))
    with pytest.raises(FileNotFoundError):
        GaussianNetworkModel("/nonexistent.pdb", 4.0, 1.0, 1.0)


def test_parity_adapter_detects_a_wrong_value():
    """The build_gamma replay compares the rebuilt gamma with the recorded one: a wrong record must fail."""
    from trace_tools.compare import compare
    from trace_tools.registry import load_registry
    from trace_tools.values import Call

    entry = load_registry()["eryx.pdb.GaussianNetworkModel.build_gamma"]
    read = {"n_cell": 27, "n_asu": 2, "id_cell_ref": 13, "gamma_intra": 2.0, "gamma_inter": 0.5}
    gamma = np.full((27, 2, 2), 0.5)
    gamma[13] = np.diag([2.0, 2.0]) + 0.5 * (1 - np.eye(2))
    right = Call("eryx.pdb.GaussianNetworkModel.build_gamma", "x-s1", 0, {}, (), attrs_read=read,
                 attrs_written={"gamma": gamma})
    assert compare(*entry.replay(right)).ok
    wrong = gamma.copy()
    wrong[0, 1, 0] = 0.6
    right.attrs_written = {"gamma": wrong}
    assert not compare(*entry.replay(right)).ok
