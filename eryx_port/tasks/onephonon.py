# SPDX-License-Identifier: GPL-2.0-or-later
"""``eryx-port run -c CONFIG -t OnePhonon``: eryx's OnePhonon task (scripts/tasks.py), map written slab by slab."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..cli import (
    Stages, UsageError, _default_max_memory, _remove_created, _summary, check_device, check_memory,
    check_structure, check_writable, compute_map, warn_symmetry,
)
from ..config import ROOT_SUBDIRS, onephonon_job


def run(config, args) -> int:
    """eryx's OnePhonon task: the map of the config's grid with the file's B-factors, to ROOT_DIR/models/onephonon.npy."""
    job = onephonon_job(config)
    check_writable(job.root_dir, "setup.root_dir")
    if job.root_dir.exists() and not job.root_dir.is_dir():
        raise UsageError(f"setup.root_dir {str(job.root_dir)!r} exists and is not a folder")
    device = check_device(args.device)
    structure = check_structure(job.pdb_path, expand_p1=job.expand_p1)
    warn_symmetry(structure)
    itemsize = 8 if args.dtype == "float64" else 4
    samplings = [job.hsampling, job.ksampling, job.lsampling]
    max_memory = args.max_memory or _default_max_memory(device)
    need = check_memory(
        samplings, structure, itemsize=itemsize, device=device, max_memory=max_memory,
        lower="setup.hsampling/ksampling/lsampling (range or oversampling) in the config, or use --dtype float32",
    )
    stages = Stages(["phonons (model setup)", "diffuse intensity", "writing files"], args.quiet)
    try:
        target, made = _run_output_path(job)
        fd, tmp = tempfile.mkstemp(prefix=".onephonon.", suffix=".npy.partial", dir=target.parent)
        os.close(fd)
        try:
            _, intensity = compute_map(
                job.model_kwargs(), use_data_adp=True, device=device, dtype=args.dtype, stages=stages,
                out_path=Path(tmp), max_memory=max_memory,
            )
            with stages.stage("writing files"):
                os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            _remove_created(made)
            raise
        output = target
    finally:
        stages.close()
    if not args.quiet:
        lines = [_summary(structure, intensity, samplings, stages.times, [output], need, device, args.dtype)]
        if job.ignored:
            lines.append(f"note        setup.{', setup.'.join(job.ignored)} not used by the OnePhonon task (as in eryx)")
        print("\n".join(lines))
    return 0


def _run_output_path(job) -> tuple[Path, list[Path]]:
    """Create ROOT_DIR/{models,base,figs} as eryx's main.py does; the map's path (written atomically by
    run_task) and the folders this made (removed again if the run fails)."""
    made = []
    try:
        for folder in [*reversed(job.root_dir.parents), job.root_dir, *(job.root_dir / sub for sub in ROOT_SUBDIRS)]:
            if not folder.exists():
                folder.mkdir()
                made.append(folder)
    except OSError as exc:
        _remove_created(made)
        raise UsageError(f"cannot create root path {str(job.root_dir)!r}: {exc.strerror or exc}") from exc
    return job.output, made
