# SPDX-License-Identifier: GPL-2.0-or-later
"""Checks of eryx_port.scatter that do not rely on eryx: gemmi's direct sum, symmetry laws, chunking, dtypes, errors."""

import math

import numpy as np
import pytest
import torch

from eryx_port.scatter import compute_form_factors, structure_factors, structure_factors_batch


def _random_model(n_q=40, n_atoms=9, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n_q, 3, generator=g, dtype=dtype) * 1.5
    xyz = torch.randn(n_atoms, 3, generator=g, dtype=dtype) * 10
    ff_a = torch.rand(n_atoms, 4, generator=g, dtype=dtype) * 3 + 0.1
    ff_b = torch.rand(n_atoms, 4, generator=g, dtype=dtype) * 30 + 0.5
    ff_c = torch.rand(n_atoms, generator=g, dtype=dtype)
    U = torch.rand(n_atoms, generator=g, dtype=dtype) * 0.5 + 0.05
    return q, xyz, ff_a, ff_b, ff_c, U


# ---------------------------------------------------------------- against gemmi


def _gemmi_p1_model(path, force_p1):
    import gemmi
    st = gemmi.read_structure(str(path))
    if force_p1:  # the file's atoms alone, without the symmetry mates gemmi would add
        st.spacegroup_hm = "P 1"
        st.setup_cell_images()
    atoms = [cra.atom for cra in st[0].all()]
    for atom in atoms:  # isotropic B only, as the port models it
        atom.aniso = gemmi.SMat33f(0, 0, 0, 0, 0, 0)
    coefs = np.array([atom.element.it92.get_coefs() for atom in atoms], dtype=np.float64)
    occ = np.array([atom.occ for atom in atoms])
    inputs = dict(
        xyz=np.array([atom.pos.tolist() for atom in atoms]),
        ff_a=coefs[:, :4] * occ[:, None],
        ff_b=coefs[:, 4:8],
        ff_c=coefs[:, 8] * occ,
        U=np.array([atom.b_iso for atom in atoms]) / (8 * math.pi**2),
    )
    return st, inputs


@pytest.mark.parametrize("name,force_p1", [("2ol9.pdb", False), ("5zck.pdb", True)])
def test_structure_factors_match_gemmi_direct_sum(pdb_file, name, force_p1):
    import gemmi
    st, inputs = _gemmi_p1_model(pdb_file(name), force_p1)
    hkl = np.random.default_rng(3).integers(-6, 7, size=(60, 3))
    calc = gemmi.StructureFactorCalculatorX(st.cell)
    expected = np.array([calc.calculate_sf_from_model(st[0], [int(v) for v in h]) for h in hkl])
    q = 2 * math.pi * hkl @ np.array(st.cell.frac.mat)
    got = structure_factors(q, **inputs, batch_size=16).numpy()
    assert np.abs(expected).max() > 10  # a real signal, not all zeros
    # gemmi works in single precision for positions and coefficients
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6 * np.abs(expected).max())


def test_form_factors_match_gemmi_it92():
    import gemmi
    elements = ["C", "N", "O", "S", "Fe"]
    coefs = np.array([gemmi.Element(e).it92.get_coefs() for e in elements], dtype=np.float64)
    q = np.array([[0.0, 0.0, 0.0], [0.3, -0.2, 0.1], [1.0, 2.0, -0.5], [3.0, 0.0, 4.0]])
    stol2 = (np.linalg.norm(q, axis=1) / (4 * math.pi)) ** 2  # (sin(theta)/lambda)^2
    expected = np.array([[gemmi.Element(e).it92.calculate_sf(s) for e in elements] for s in stol2])
    got = compute_form_factors(q, coefs[:, :4], coefs[:, 4:8], coefs[:, 8])
    assert got.shape == (4, 5) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


def test_forward_scattering_counts_electrons():
    q, xyz, ff_a, ff_b, ff_c, U = _random_model()
    F0 = structure_factors(torch.zeros(1, 3, dtype=torch.float64), xyz, ff_a, ff_b, ff_c, U)
    torch.testing.assert_close(F0, (ff_a.sum() + ff_c.sum()).to(torch.complex128).reshape(1), rtol=1e-14, atol=0)


# ---------------------------------------------------------------- laws and invariances


def test_friedel_mates_are_complex_conjugates():
    q, xyz, ff_a, ff_b, ff_c, U = _random_model()
    F = structure_factors(q, xyz, ff_a, ff_b, ff_c, U)
    F_minus = structure_factors(-q, xyz, ff_a, ff_b, ff_c, U)
    assert F.abs().min() > 0
    torch.testing.assert_close(F_minus, F.conj(), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(F_minus.abs(), F.abs(), rtol=1e-13, atol=0)


def test_translation_only_changes_phase():
    q, xyz, ff_a, ff_b, ff_c, U = _random_model()
    shift = torch.tensor([1.3, -2.0, 0.7], dtype=torch.float64)
    F = structure_factors(q, xyz, ff_a, ff_b, ff_c, U)
    F_shifted = structure_factors(q, xyz + shift, ff_a, ff_b, ff_c, U)
    torch.testing.assert_close(F_shifted, F * torch.exp(1j * (q @ shift)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "options",
    [{}, {"sum_over_atoms": False}, {"compute_qF": True, "sum_over_atoms": False}],
    ids=["summed", "per-atom", "qF"],
)
def test_chunking_does_not_change_results(options):
    q, xyz, ff_a, ff_b, ff_c, U = _random_model(n_q=103)
    small = structure_factors(q, xyz, ff_a, ff_b, ff_c, U, batch_size=7, **options)
    whole = structure_factors(q, xyz, ff_a, ff_b, ff_c, U, batch_size=10**9, **options)
    assert torch.equal(small, whole)
    torch.testing.assert_close(whole, structure_factors_batch(q, xyz, ff_a, ff_b, ff_c, U, **options), rtol=0, atol=0)


def test_chunking_with_projection():
    q, xyz, ff_a, ff_b, ff_c, U = _random_model(n_q=50)
    proj = torch.randn(3 * xyz.shape[0], 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    kw = dict(compute_qF=True, project_on_components=proj, sum_over_atoms=False)
    small = structure_factors(q, xyz, ff_a, ff_b, ff_c, U, batch_size=7, **kw)
    whole = structure_factors(q, xyz, ff_a, ff_b, ff_c, U, batch_size=1000, **kw)
    torch.testing.assert_close(small, whole, rtol=1e-14, atol=1e-14)


def test_per_atom_qF_and_projection_layouts():
    q, xyz, ff_a, ff_b, ff_c, U = _random_model(n_q=11, n_atoms=4)
    per_atom = structure_factors(q, xyz, ff_a, ff_b, ff_c, U, sum_over_atoms=False)
    assert per_atom.shape == (11, 4) and per_atom.dtype == torch.complex128
    torch.testing.assert_close(per_atom.sum(dim=1), structure_factors(q, xyz, ff_a, ff_b, ff_c, U))
    qF = structure_factors(q, xyz, ff_a, ff_b, ff_c, U, compute_qF=True, sum_over_atoms=False)
    assert qF.shape == (11, 12)
    # column 3 j + d is q_d times atom j's term
    torch.testing.assert_close(qF.reshape(11, 4, 3), per_atom[:, :, None] * q[:, None, :], rtol=1e-14, atol=0)
    proj = torch.randn(4, 2, dtype=torch.float64)
    projected = structure_factors(q, xyz, ff_a, ff_b, ff_c, U, project_on_components=proj, sum_over_atoms=False)
    torch.testing.assert_close(projected, per_atom @ proj.to(torch.complex128), rtol=1e-13, atol=1e-13)
    one = structure_factors(q, xyz, ff_a, ff_b, ff_c, U, project_on_components=proj[:, 0], sum_over_atoms=False)
    torch.testing.assert_close(one, projected[:, 0], rtol=1e-13, atol=1e-13)


def test_displacement_damps_by_debye_waller_factor():
    q, xyz, ff_a, ff_b, ff_c, _ = _random_model(n_atoms=6)
    U = 0.3
    F_still = structure_factors(q, xyz, ff_a, ff_b, ff_c)
    F_moving = structure_factors(q, xyz, ff_a, ff_b, ff_c, U=torch.full((6,), U, dtype=torch.float64))
    damping = torch.exp(-0.5 * U * (q * q).sum(dim=1))
    torch.testing.assert_close(F_moving, F_still * damping, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(structure_factors(q, xyz, ff_a, ff_b, ff_c, U=U), F_moving, rtol=1e-14, atol=0)


# ---------------------------------------------------------------- inputs, dtypes, devices


def test_numpy_list_and_tensor_inputs_agree():
    q, xyz, ff_a, ff_b, ff_c, U = _random_model(n_q=5, n_atoms=3)
    from_tensors = structure_factors(q, xyz, ff_a, ff_b, ff_c, U)
    from_numpy = structure_factors(q.numpy(), xyz.numpy(), ff_a.numpy(), ff_b.numpy(), ff_c.numpy(), U.numpy())
    from_lists = structure_factors(q.tolist(), xyz.tolist(), ff_a.tolist(), ff_b.tolist(), ff_c.tolist(), U.tolist())
    assert torch.equal(from_tensors, from_numpy) and torch.equal(from_tensors, from_lists)


def test_float32_close_to_float64():
    q, xyz, ff_a, ff_b, ff_c, U = _random_model(n_q=200, n_atoms=30)
    F64 = structure_factors(q, xyz, ff_a, ff_b, ff_c, U)
    F32 = structure_factors(q, xyz, ff_a, ff_b, ff_c, U, dtype=torch.float32)
    assert F32.dtype == torch.complex64
    from_float32_tensors = structure_factors(*(t.float() for t in (q, xyz, ff_a, ff_b, ff_c, U)))
    assert from_float32_tensors.dtype == torch.complex64
    scale = F64.abs().max()
    assert (F32.to(torch.complex128) - F64).abs().max() < 1e-4 * scale
    ff = compute_form_factors(q, ff_a, ff_b, ff_c, dtype="float32")
    assert ff.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")
def test_cuda_matches_cpu():
    q, xyz, ff_a, ff_b, ff_c, U = _random_model(n_q=300, n_atoms=20)
    cpu = structure_factors(q, xyz, ff_a, ff_b, ff_c, U, batch_size=64, compute_qF=True, sum_over_atoms=False)
    gpu = structure_factors(q.numpy(), xyz, ff_a, ff_b, ff_c, U, batch_size=64, compute_qF=True, sum_over_atoms=False, device="cuda")
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-12, atol=1e-12 * cpu.abs().max().item())


def test_empty_q_grid_gives_empty_result():
    _, xyz, ff_a, ff_b, ff_c, U = _random_model(n_atoms=3)
    F = structure_factors(np.zeros((0, 3)), xyz, ff_a, ff_b, ff_c, U, sum_over_atoms=False)
    assert F.shape == (0, 3)


@pytest.mark.parametrize(
    "change,name",
    [
        ({"q_grid": np.zeros((4, 2))}, "q_grid"),
        ({"xyz": np.zeros((3, 3))}, "xyz"),
        ({"ff_a": np.zeros(9)}, "ff_a"),
        ({"ff_b": np.zeros((9, 3))}, "ff_b"),
        ({"ff_c": np.zeros((9, 1))}, "ff_c"),
        ({"U": np.zeros(8)}, "U"),
        ({"project_on_components": np.zeros((10, 2))}, "project_on_components"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
    ],
)
def test_bad_input_names_the_argument(change, name):
    q, xyz, ff_a, ff_b, ff_c, U = _random_model()
    args = {**dict(q_grid=q, xyz=xyz, ff_a=ff_a, ff_b=ff_b, ff_c=ff_c, U=U), **change}
    with pytest.raises(ValueError, match=name):
        structure_factors(**args)


def test_compute_qF_projection_needs_three_rows_per_atom():
    q, xyz, ff_a, ff_b, ff_c, U = _random_model(n_atoms=4)
    with pytest.raises(ValueError, match="3 \\* n_atoms = 12"):
        structure_factors_batch(q, xyz, ff_a, ff_b, ff_c, U, compute_qF=True, project_on_components=np.ones((4, 2)))


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", ["q_grid", "xyz", "U", "ff_a", "ff_b", "ff_c"])
@pytest.mark.parametrize("options", [{}, {"compute_qF": True, "project_on_components": "proj"}], ids=["F", "qF-projected"])
def test_gradcheck(name, options):
    q, xyz, ff_a, ff_b, ff_c, U = _random_model(n_q=5, n_atoms=3, seed=7)
    q = q * 0.3  # moderate phases keep finite differences accurate
    inputs = dict(q_grid=q, xyz=xyz, ff_a=ff_a, ff_b=ff_b, ff_c=ff_c, U=U)
    if options.get("project_on_components") == "proj":
        options = dict(options, project_on_components=torch.randn(9, 2, dtype=torch.float64), sum_over_atoms=False)
    x = inputs.pop(name).clone().requires_grad_(True)

    def fn(t):
        return structure_factors(**inputs, **{name: t}, batch_size=2, **options)

    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_gradient_reaches_every_input():
    q, xyz, ff_a, ff_b, ff_c, U = (t.clone().requires_grad_(True) for t in _random_model(n_q=6, n_atoms=4))
    structure_factors(q, xyz, ff_a, ff_b, ff_c, U, batch_size=4).abs().square().sum().backward()
    for t in (q, xyz, ff_a, ff_b, ff_c, U):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_form_factor_gradient_is_finite_at_q_zero():
    _, _, ff_a, ff_b, ff_c, _ = _random_model(n_atoms=3)
    q = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: compute_form_factors(t, ff_a, ff_b, ff_c), (q,))


def test_shared_coefficients_evaluated_once_give_the_same_values():
    # atoms of one element share form-factor coefficients; the port evaluates each set once
    # unless the coefficients need gradients: both ways must agree exactly
    q, xyz, ff_a, ff_b, ff_c, U = _random_model(n_q=30, n_atoms=12)
    element = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0, 1, 2, 2, 0])
    ff_a, ff_b, ff_c = ff_a[element], ff_b[element], ff_c[element]
    shared = structure_factors(q, xyz, ff_a, ff_b, ff_c, U, sum_over_atoms=False)
    per_atom = structure_factors(q, xyz, ff_a.clone().requires_grad_(True), ff_b, ff_c, U, sum_over_atoms=False)
    assert torch.equal(shared, per_atom.detach())


def test_gradcheck_q_points_are_off_the_axes():
    from eryx_port.parity.scatter import N_Q, off_axis_q

    q = off_axis_q(np.array([[0.0, 0.0, 1.0], [0.5, 0.0, 0.0]]))
    assert q.shape == (N_Q, 3) and N_Q > 6 and (np.abs(q) > 1e-3).all()


def test_form_factor_paths_agree():
    # atoms sharing coefficients: the no-grad shortcut (torch.unique) and the gradient path
    from eryx_port.parity.scatter import _coefficients_requiring_grad

    a = np.tile([[2.3, 1.0, 1.5, 0.9]], (3, 1))
    args = {"q_grid": np.array([[0.1, -0.2, 0.3], [1.0, 0.4, -0.7]]), "ff_a": a, "ff_b": a * 7, "ff_c": np.full(3, 0.2)}
    plain = compute_form_factors(args["q_grid"], args["ff_a"], args["ff_b"], args["ff_c"])
    g = _coefficients_requiring_grad(args)
    grad = compute_form_factors(g["q_grid"], g["ff_a"], g["ff_b"], g["ff_c"])
    assert grad.requires_grad and not plain.requires_grad
    assert torch.equal(plain, grad.detach())
