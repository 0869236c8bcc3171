# SPDX-License-Identifier: GPL-2.0-or-later
"""eryx_port.reference against its formulas as float64 double loops (what eryx loops over, with float64 form factors)."""

import numpy as np
import pytest
import torch

from eryx_port import reference
from eryx_port.scatter import structure_factors as fast_structure_factors


def _setup(n_atoms=5, n_q=6, seed=0):
    import gemmi

    rng = np.random.default_rng(seed)
    symbols = ["C", "N", "O", "S", "C", "Fe"][:n_atoms]
    elements = [gemmi.Element(s) for s in symbols]
    q = rng.normal(size=(n_q, 3)) * 1.2
    xyz = rng.normal(size=(n_atoms, 3)) * 4
    return rng, symbols, elements, q, xyz


def _f(el, q):
    s2 = (np.linalg.norm(q) / (4 * np.pi)) ** 2
    return sum(a * np.exp(-b * s2) for a, b in zip(el.it92.a, el.it92.b)) + el.it92.c


def test_structure_factors_loops():
    rng, symbols, elements, q, xyz = _setup()
    L = rng.normal(size=(5, 3, 3)) * 0.3
    for U in (None, rng.uniform(0.1, 0.5, 5), np.einsum("nij,nkj->nik", L, L)):
        expected = np.zeros(len(q), dtype=complex)
        for i, qi in enumerate(q):
            for j in range(len(xyz)):
                qUq = 0.0 if U is None else (qi @ qi * U[j] if U.ndim == 1 else qi @ U[j] @ qi)
                expected[i] += _f(elements[j], qi) * np.exp(1j * qi @ xyz[j]) * np.exp(-0.5 * qUq)
        for els in (elements, symbols):
            got = reference.structure_factors(q, xyz, els, U=U).numpy()
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())


def test_structure_factors_agree_with_the_fast_path():
    rng, symbols, elements, q, xyz = _setup(seed=3)
    U = rng.uniform(0.1, 0.5, 5)
    coefs = [(list(e.it92.a), list(e.it92.b), e.it92.c) for e in elements]
    fast = fast_structure_factors(q, xyz, [c[0] for c in coefs], [c[1] for c in coefs], [c[2] for c in coefs], U=U)
    torch.testing.assert_close(reference.structure_factors(q, xyz, elements, U=U), fast, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("anisotropic", [False, True])
def test_diffuse_covmat_loops(anisotropic):
    rng, symbols, elements, q, xyz = _setup(n_atoms=4, seed=1)
    W = rng.normal(size=(12, 12)) * 0.2
    V4 = (W @ W.T).reshape(4, 3, 4, 3).transpose(0, 2, 1, 3)
    V = V4 if anisotropic else np.einsum("jkii->jk", V4) / 3
    Id, Ib = np.zeros(len(q)), np.zeros(len(q))
    for i, qi in enumerate(q):
        Fd = Fb = 0.0
        for j in range(4):
            for k in range(4):
                quad = (lambda M: qi @ M @ qi) if anisotropic else (lambda m: qi @ qi * m)
                common = _f(elements[j], qi) * _f(elements[k], qi) * np.exp(-1j * qi @ (xyz[j] - xyz[k]))
                common *= np.exp(-0.5 * quad(V[j][j]) - 0.5 * quad(V[k][k]))
                Fb += common
                Fd += common * (np.exp(quad(V[j][k])) - 1)
        Id[i] = Fd.real
        Ib[i] = Fb.real
    got_d, got_b = reference.diffuse_covmat(q, xyz, elements, V)
    np.testing.assert_allclose(got_d.numpy(), Id, rtol=1e-11, atol=1e-12 * np.abs(Id).max())
    np.testing.assert_allclose(got_b.numpy(), Ib, rtol=1e-11, atol=1e-12 * np.abs(Ib).max())


def test_reference_gradients_and_errors():
    rng, symbols, elements, q, xyz = _setup(n_atoms=3, n_q=3, seed=2)
    V = torch.tensor(np.eye(3) * 0.2 + 0.05, requires_grad=True)  # isotropic 3 x 3: not a 3x3 tensor per atom
    r = torch.tensor(xyz, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, v: reference.diffuse_covmat(q, x, elements, v), (r, V))
    with pytest.raises(ValueError, match="one element per atom"):
        reference.structure_factors(q, xyz, elements[:2])
    with pytest.raises(ValueError, match="V must have shape"):
        reference.diffuse_covmat(q, xyz, elements, np.ones((3, 2)))
