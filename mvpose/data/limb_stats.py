"""Limb-length statistics (ContextPose's limb-length prior).

ContextPose (Ma et al., CVPR 2021) weights the context passed between neighbouring joints by how
well the distance between two voxels matches the length of the limb joining them, using the mean
and standard deviation of every limb's length over the training set. These are stored in
``mean_and_std_limb_length.h5``: two root datasets ``mean`` and ``std``, float64 ``(L,)`` in mm, in
the order of the limb list (:data:`mvpose.skeleton.H36M17_LT_LIMBS` for the official model, 16 limbs).
``std`` is the population standard deviation (``ddof=0``).

Example:
    >>> kp = torch.zeros(2, 17, 3); kp[:, 1, 0] = torch.tensor([400.0, 500.0])
    >>> mean, std = compute_limb_stats(kp, H36M17_LT_LIMBS)
    >>> float(mean[0]), float(std[0])
    (450.0, 50.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mvpose.skeleton import H36M17_LT_LIMBS

__all__ = ["compute_limb_stats", "read_limb_stats_h5", "write_limb_stats_h5", "H36M17_LT_LIMBS"]


def compute_limb_stats(
    keypoints_3d: Tensor | np.ndarray,
    limbs: Sequence[Sequence[int]] = H36M17_LT_LIMBS,
    validity: Tensor | np.ndarray | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-limb mean and population std of the limb lengths over a set of poses.

    Args:
        keypoints_3d: ``(N, J, 3)`` poses in mm (any frame: lengths do not depend on it).
            Frames with a NaN on either end of a limb are left out of that limb's statistics.
        limbs: ``L`` pairs ``(j0, j1)`` of joint indices (default: ContextPose's 16 limbs).
        validity: optional ``(N, J)`` weights/flags; a limb counts in a frame only where both of
            its joints are valid (``> 0``).

    Returns:
        ``mean (L,)`` and ``std (L,)`` in mm, float64 (``std`` with ``ddof=0``). A limb with no valid
        frame gives NaN.
    """
    kp = torch.as_tensor(np.asarray(keypoints_3d) if not isinstance(keypoints_3d, Tensor) else keypoints_3d)
    if kp.ndim != 3 or kp.shape[-1] != 3:
        raise ValueError(f"compute_limb_stats: keypoints_3d must be (N, J, 3), got {tuple(kp.shape)}")
    pairs = torch.as_tensor(np.asarray(limbs, dtype=np.int64))
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(
            f"compute_limb_stats: limbs must be (L, 2) joint index pairs, got {tuple(pairs.shape)}"
        )
    J = kp.shape[1]
    if pairs.numel() and (int(pairs.min()) < 0 or int(pairs.max()) >= J):
        raise ValueError(f"compute_limb_stats: limb joint indices must be in [0, {J}), got {pairs.tolist()}")
    kp = kp.to(torch.float64)
    lengths = torch.linalg.vector_norm(kp[:, pairs[:, 0]] - kp[:, pairs[:, 1]], dim=-1)  # (N, L)
    ok = torch.isfinite(lengths)
    if validity is not None:
        v = torch.as_tensor(np.asarray(validity) if not isinstance(validity, Tensor) else validity)
        if v.shape != kp.shape[:2]:
            raise ValueError(
                f"compute_limb_stats: validity must be (N, J) = {tuple(kp.shape[:2])}, got {tuple(v.shape)}"
            )
        v = v.to(kp.device) > 0
        ok = ok & v[:, pairs[:, 0]] & v[:, pairs[:, 1]]
    w = ok.to(torch.float64)
    count = w.sum(0)
    x = torch.where(ok, lengths, torch.zeros_like(lengths))
    mean = x.sum(0) / count
    var = (w * (x - mean) ** 2).sum(0) / count
    return mean, var.sqrt()


def read_limb_stats_h5(path: str | Path) -> tuple[Tensor, Tensor]:
    """Read ``mean_and_std_limb_length.h5`` (root datasets ``mean`` and ``std``, ``(L,)`` mm).

    Returns:
        ``mean (L,)``, ``std (L,)`` as float64 tensors.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"limb-length statistics file not found: {path}")
    with h5py.File(path, "r") as f:
        missing = [k for k in ("mean", "std") if k not in f]
        if missing:
            raise ValueError(
                f"{path}: missing dataset(s) {missing}; expected root datasets 'mean' and 'std' (L,) in mm"
            )
        mean = np.asarray(f["mean"][()], dtype=np.float64)
        std = np.asarray(f["std"][()], dtype=np.float64)
    if mean.ndim != 1 or mean.shape != std.shape:
        raise ValueError(f"{path}: 'mean' {mean.shape} and 'std' {std.shape} must both be (L,)")
    return torch.from_numpy(mean), torch.from_numpy(std)


def write_limb_stats_h5(path: str | Path, mean: Tensor | np.ndarray, std: Tensor | np.ndarray) -> Path:
    """Write ``mean`` and ``std`` ``(L,)`` (mm) as float64 root datasets, the official layout.

    The file is written to a temporary name in the same folder and renamed (atomic).
    """
    import h5py

    path = Path(path)
    m = np.asarray(mean.detach().cpu() if isinstance(mean, Tensor) else mean, dtype=np.float64)
    s = np.asarray(std.detach().cpu() if isinstance(std, Tensor) else std, dtype=np.float64)
    if m.ndim != 1 or m.shape != s.shape:
        raise ValueError(f"write_limb_stats_h5: mean {m.shape} and std {s.shape} must both be (L,)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("mean", data=m)
        f.create_dataset("std", data=s)
    tmp.replace(path)
    return path


def limb_stats_from_source(
    source: str,
    path: str | Path | None = None,
    *,
    subjects: tuple[str, ...] = ("S1", "S5", "S6", "S7", "S8"),
    num_motions: int = 32,
    seed: int = 0,
) -> tuple[Tensor, Tensor, int]:
    """Limb-length statistics ``(mean (L,), std (L,))`` in mm from training data, and the number
    of poses used. Limbs are ContextPose's (``H36M17_LT_LIMBS``).

    Args:
        source: ``"h36m"`` (learnable triangulation's labels ``.npy`` at ``path``, training
            ``subjects``), ``"npz"`` (a VideoPose3D ``data_3d_*.npz`` at ``path``, ``subjects``) or
            ``"synthetic"`` (``num_motions`` procedural training motions from ``seed``).
    """
    from mvpose.skeleton import get_joint_map

    to_lt = get_joint_map("h36m17", "h36m17_lt")
    if source == "h36m":
        from mvpose.data.h36m import load_h36m_labels

        labels = load_h36m_labels(path)
        keep = np.isin(np.asarray(labels["subject_names"])[labels["subject_idx"]], subjects)
        poses = np.asarray(labels["keypoints"])[keep]  # already in the LT order
    elif source == "npz":
        from mvpose.data.sequences import read_positions_3d

        data = read_positions_3d(path)
        chunks = [a for s, acts in data.items() if s in subjects for a in acts.values()]
        if not chunks:
            raise ValueError(f"{path}: no sequences of subjects {list(subjects)}; it has {sorted(data)}")
        poses = to_lt.apply(np.concatenate(chunks))
    elif source == "synthetic":
        from mvpose.data.motion import generate_motion

        # even seeds: the synthetic studio's training motions (odd seeds are validation)
        chunks = [generate_motion(2 * (seed + i), num_frames=200).positions_mm for i in range(num_motions)]
        poses = to_lt.apply(np.concatenate(chunks))
    else:
        raise ValueError(f"unknown limb-stats source {source!r}; expected 'h36m', 'npz' or 'synthetic'")
    poses = torch.as_tensor(np.asarray(poses, dtype=np.float64))
    mean, std = compute_limb_stats(poses)
    return mean, std, int(poses.shape[0])
