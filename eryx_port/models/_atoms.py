"""Coordinates and B-factors given by the user in place of the file's (for gradients and fits)."""

from __future__ import annotations

from ..tensors import as_real


def override_atoms(model, xyz, adp, dtype, device) -> None:
    """Put ``xyz`` (n_asu, n_atoms, 3) and ``adp`` ((n_atoms,) or (n_asu, n_atoms)) B-factors, tensors that
    may require grad, in place of ``model``'s; ``None`` keeps the file's. Shapes are checked by name."""
    shape = tuple(model.xyz.shape)
    if xyz is not None:
        xyz = as_real(xyz, dtype, device)
        if tuple(xyz.shape) != shape:
            raise ValueError(f"xyz must have shape {shape} (n_asu, n_atoms, 3), got {tuple(xyz.shape)}")
        model.xyz = xyz
    if adp is not None:
        adp = as_real(adp, dtype, device)
        if tuple(adp.shape) == shape[1:2]:
            adp = adp.expand(shape[0], shape[1])
        if tuple(adp.shape) != shape[:2]:
            raise ValueError(f"adp must have shape {shape[1:2]} or {shape[:2]}, got {tuple(adp.shape)}")
        model.adp = adp
