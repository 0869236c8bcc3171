"""The mode comparison of the parity adapters cannot be fooled by rotated or mixed modes."""

import numpy as np
from scipy.stats import ortho_group, unitary_group

from eryx_port.parity.models.onephonon import align_modes, eigenvalue_clusters, kvec_class, mode_floor
from trace_tools.compare import compare


def _modes(lam, seed=0):
    """Orthonormal (M = I) modes V of one k with eigenvalues ``lam``, and eryx's Winv = 1/lam."""
    V = unitary_group.rvs(len(lam), random_state=seed)
    return V[None], (1.0 / np.asarray(lam, dtype=float))[None]


def test_clusters_only_equal_eigenvalues():
    lam = np.array([np.nan, np.nan, 0.0022737, 0.0022859, 1.0, 1.0 + 1e-15, 2.0])
    clusters = [c.tolist() for c in eigenvalue_clusters(lam)]
    assert clusters == [[0, 1], [2], [3], [4, 5], [6]]


def test_phase_of_a_distinct_mode_is_aligned():
    V, Winv = _modes([1.0, 2.0, 3.0])
    phased = V * np.exp(1j * np.array([0.3, -1.2, 2.0]))
    assert compare(align_modes(phased, V, Winv, np.eye(3)), V).ok


def test_rotation_across_distinct_modes_fails():
    # modes 1.4% apart (7n2h-s1's acoustic triple): no longer one cluster, so a mixing shows
    V, Winv = _modes([0.0022737, 0.0022859, 0.0023063, 1.0])
    R = np.eye(4, dtype=complex)
    R[:3, :3] = ortho_group.rvs(3, random_state=1)
    assert not compare(align_modes(V @ R, V, Winv, np.eye(4)), V).ok


def test_swap_of_neighbouring_modes_fails():
    V, Winv = _modes([1.0, 1.0 + 4.5e-7, 2.0])  # the closest distinct pair recorded (5zck-s2)
    swapped = V[..., [1, 0, 2]]
    assert not compare(align_modes(swapped, V, Winv, np.eye(3)), V).ok


def test_rotation_within_a_degenerate_cluster_is_undone():
    V, Winv = _modes([1.0, 1.0, 2.0])
    R = np.eye(3, dtype=complex)
    R[:2, :2] = unitary_group.rvs(2, random_state=2)
    assert compare(align_modes(V @ R, V, Winv, np.eye(3)), V).ok


def test_rb_identity_rotated_fails():
    # 'rb' modes are compared as they are (the identity on both sides): one cluster of equal Winv
    # would let align_modes undo any rotation, so the adapter does not align them.
    from eryx_port.parity.models.onephonon import _modes_expected

    class RigidBody:
        gnm = None
        V = np.eye(6, dtype=complex)[None] @ ortho_group.rvs(6, random_state=3)

    eye = np.eye(6, dtype=complex)[None]
    actual, expected = _modes_expected(RigidBody(), {"V": eye, "Winv": np.full((1, 6), 0.5)})
    assert not compare(actual, expected).ok
    RigidBody.V = eye
    assert compare(*_modes_expected(RigidBody(), {"V": eye, "Winv": np.full((1, 6), 0.5)})).ok


def test_mode_floor_grows_as_the_gap_closes():
    wide = mode_floor(1.0 / np.array([[1.0, 2.0, 3.0]]), 3).item()
    close = mode_floor(1.0 / np.array([[1.0, 1.0 + 1e-6, 3.0]]), 3).item()
    assert wide < 1e-13 and close > 1e3 * wide


def test_kvec_class_matches_eryx_stepping():
    # map (4, 3, 2) on a k grid (2, 3, 1): Miller index i sits at k-step i mod sampling
    where = kvec_class((4, 3, 2), (2, 3, 1)).reshape(4, 3, 2)
    assert where[0, 0, 0] == 0 and where[2, 0, 1] == 0 and where[1, 2, 0] == 5 and where[3, 1, 1] == 4
