"""Contact sheets: a PNG grid of the views of a few samples with their 2D joints and limbs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from mvpose.data.transforms import denormalize_image
from mvpose.skeleton import H36M17_LT, Skeleton, get_skeleton

__all__ = ["write_contact_sheet", "draw_pose"]

_LEFT_COL, _RIGHT_COL, _MID_COL = (60, 160, 255), (255, 90, 60), (250, 250, 250)


def _side_colour(sk: Skeleton, j: int):
    if j in sk.left_indices:
        return _LEFT_COL
    if j in sk.right_indices:
        return _RIGHT_COL
    return _MID_COL


def draw_pose(
    image: np.ndarray, keypoints_2d: np.ndarray, visibility: np.ndarray, skeleton: Skeleton, scale=1.0
):
    """Draw limbs and joints on ``image (H, W, 3)`` uint8 RGB in place: left side blue, right side red,
    centre white; visible joints filled, hidden ones hollow, limbs to a hidden joint thin."""
    kp = np.asarray(keypoints_2d, dtype=np.float64) * scale
    vis = np.asarray(visibility, dtype=bool)
    S = 16
    for p, c in skeleton.limbs:
        a, b = kp[p], kp[c]
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            continue
        th = 2 if vis[p] and vis[c] else 1
        cv2.line(
            image,
            tuple(int(x * S) for x in a),
            tuple(int(x * S) for x in b),
            _side_colour(skeleton, c),
            th,
            cv2.LINE_AA,
            4,
        )
    for j, q in enumerate(kp):
        if not np.isfinite(q).all():
            continue
        c = tuple(int(x * S) for x in q)
        col = _side_colour(skeleton, j)
        if vis[j]:
            cv2.circle(image, c, 3 * S, (0, 0, 0), -1, cv2.LINE_AA, 4)
            cv2.circle(image, c, int(2.2 * S), col, -1, cv2.LINE_AA, 4)
        else:
            cv2.circle(image, c, 3 * S, col, 1, cv2.LINE_AA, 4)
    return image


def write_contact_sheet(
    out_png,
    dataset_or_samples,
    num_samples: int = 4,
    indices: Sequence[int] | None = None,
    skeleton: Skeleton | str | None = None,
    tile_size: int | None = None,
    draw: bool = True,
) -> Path:
    """Write a PNG grid: one row per sample, one column per view, joints and limbs overlaid.

    Args:
        out_png: output path (folders are created).
        dataset_or_samples: a dataset returning docs/datasets.md samples (``dataset[i]``), or a list
            of such samples.
        num_samples: rows (the first ones, or ``indices``).
        indices: which samples of a dataset (default ``range(num_samples)``).
        skeleton: joint set of ``keypoints_2d`` (default ``dataset.skeleton``, else ``H36M17_LT``).
        tile_size: size of each tile in px (default: the crop size).
        draw: overlay the 2D joints (``keypoints_2d``; visible filled, hidden hollow).

    Returns:
        the path written. Each tile is labelled with the sample index, camera and action.
    """
    if isinstance(dataset_or_samples, list | tuple):
        samples = (
            list(dataset_or_samples)[:num_samples]
            if indices is None
            else [dataset_or_samples[i] for i in indices]
        )
    else:
        idx = list(range(min(num_samples, len(dataset_or_samples)))) if indices is None else list(indices)
        samples = [dataset_or_samples[i] for i in idx]
    if not samples:
        raise ValueError("write_contact_sheet: no samples")
    if skeleton is None:
        skeleton = getattr(dataset_or_samples, "skeleton", None) or H36M17_LT
    skeleton = get_skeleton(skeleton) if isinstance(skeleton, str) else skeleton
    rows = []
    for s in samples:
        imgs = denormalize_image(torch.as_tensor(s["images"])).numpy()  # (V, H, W, 3) RGB
        V, H, W = imgs.shape[:3]
        ts = tile_size or W
        scale = ts / W
        tiles = []
        for v in range(V):
            img = (
                imgs[v]
                if scale == 1
                else cv2.resize(imgs[v], (ts, int(round(H * scale))), interpolation=cv2.INTER_LINEAR)
            )
            img = np.ascontiguousarray(img)
            if draw:
                kp = torch.as_tensor(s["keypoints_2d"][v]).numpy()
                vis = torch.as_tensor(s["visibility"][v]).numpy()
                draw_pose(img, kp, vis, skeleton, scale)
            name = s["camera_names"][v] if "camera_names" in s else f"view{v}"
            label = f"#{int(s['index'])} {name} {s.get('action', '')}"
            cv2.putText(img, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(img, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
            cv2.rectangle(img, (0, 0), (img.shape[1] - 1, img.shape[0] - 1), (255, 255, 255), 1)
            tiles.append(img)
        rows.append(np.concatenate(tiles, 1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    sheet = np.concatenate(rows, 0)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {out}")
    return out
