"""3D joints straight from calibrated videos with a multi-view model (``mvpose infer --videos``).

:func:`infer_videos` reads one video per camera with ``cv2.VideoCapture`` (file stem = camera
name, matched to the calibration like detection folders), steps through them in lockstep and
feeds batches of frames to any model that follows the multi-view contract (docs/models.md)::

    model(images (B, V, 3, S, S), proj_matrices (B, V, 3, 4), root=None) -> {"keypoints_3d": (B, J, 3) mm}

Per frame and camera: undistortion of the whole frame (the undistorted image keeps ``K``), a square
crop of ``crop_px`` pixels centred on the image centre, or on the reprojection of the subject's
3D centre (mean of the joints) found in the previous batch, resized to ``S x S``
(:func:`mvpose.data.transforms.crop_and_resize`, with ``K`` updated by ``CameraRig.crop`` and
``resize``), then ImageNet normalisation as in the datasets (:func:`~mvpose.data.transforms.normalize_image`).
Frames are batched over time, so the crop centre of a batch comes from the last frame of the
previous batch.

Sync offsets follow :func:`mvpose.pipeline.detections.shift_cameras`: frame ``f`` of the result is
camera ``c``'s frame ``f + offset_c``. Reading stops at the end of the shortest video (after its
offset), with a warning naming it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mvpose.geometry.camera import CameraRig
from mvpose.pipeline.detections import camera_index, match_cameras
from mvpose.pipeline.triangulate import TriangulationResult

__all__ = ["VIDEO_SUFFIXES", "find_videos", "infer_videos"]

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v")


def find_videos(folder) -> list[Path]:
    """Video files of ``folder`` (by suffix, sorted by name); ValueError if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"videos folder '{folder}' not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not files:
        raise ValueError(
            f"videos folder '{folder}': no video file ({', '.join(VIDEO_SUFFIXES)}); expected one per "
            "camera, named after the camera (e.g. cam01.mp4)"
        )
    return files


class _Reader:
    """One camera's video: lockstep reading, undistortion maps built once."""

    def __init__(self, path: Path, camera: CameraRig, view: int) -> None:
        import cv2

        self.path = path
        self.cap = cv2.VideoCapture(str(path))
        if not self.cap.isOpened():
            raise ValueError(f"video '{path}': cannot be opened by OpenCV (missing codec or not a video)")
        self.size = (
            int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        self.count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT))  # may be approximate; reading decides
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS)) or None
        self.maps = None
        if bool((camera.dist[view] != 0).any()):
            from mvpose.data.transforms import undistortion_maps

            self.maps = undistortion_maps(camera, self.size, view)

    def skip(self, n: int) -> int:
        done = 0
        while done < n and self.cap.grab():
            done += 1
        return done

    def read(self) -> np.ndarray | None:
        import cv2

        ok, frame = self.cap.read()
        if not ok:
            return None
        if self.maps is not None:
            frame = cv2.remap(frame, *self.maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return frame

    def close(self) -> None:
        self.cap.release()


def _boxes(centres_px: np.ndarray, crop_px: int) -> np.ndarray:
    """Integer square boxes ``(V, 4)`` of side ``crop_px`` centred on ``centres_px (V, 2)``."""
    lt = np.round(centres_px - crop_px / 2.0).astype(np.int64)
    return np.concatenate([lt, lt + crop_px], -1)


def infer_videos(
    rig: CameraRig,
    video_paths: Sequence | Mapping,
    model: Callable,
    *,
    image_size: int = 256,
    crop_px: int | None = None,
    batch_size: int = 8,
    sync_offsets: Mapping[str, int] | None = None,
    frames: tuple[int | None, int | None] = (None, None),
    follow_subject: bool = True,
    device: str | torch.device = "cpu",
    lt_bgr_quirk: bool = False,
    skeleton: str | None = None,
    progress: bool = True,
) -> TriangulationResult:
    """Run a multi-view model on calibrated videos (module docstring).

    Args:
        rig: the calibration (its cameras are matched to the video file stems).
        video_paths: paths (file stem = camera name) or ``{camera name: path}``.
        model: callable following the multi-view contract (e.g. ``mvpose.engine.load_model(ckpt)``).
        image_size: side ``S`` of the square model input (px).
        crop_px: side of the square crop in the (undistorted) frame; default the shorter frame side.
        batch_size: frames per model call.
        sync_offsets: ``{camera: frames}`` (names of the calibration or the files); see the module
            docstring.
        frames: ``(start, stop)`` frame numbers to process (``None``: from the start / to the end).
        follow_subject: centre the crops on the subject found in the previous batch (else always the
            image centre).
        device: where the model runs.
        lt_bgr_quirk: feed BGR images normalised with RGB statistics (official learnable-triangulation
            checkpoints; see :func:`~mvpose.data.transforms.normalize_image`).
        skeleton: the model's joint set (names in the result; generic names when ``None``).

    Returns:
        :class:`TriangulationResult` with ``points_3d_mm (T, J, 3)``; there are no 2D detections, so
        the reprojection errors are NaN; ``camera_stats`` holds ``frames_read`` and ``frames_skipped``.
    """
    from mvpose.data.transforms import crop_and_resize, normalize_image

    if isinstance(video_paths, Mapping):
        names, paths = list(video_paths), [Path(p) for p in video_paths.values()]
    else:
        paths = [Path(p) for p in video_paths]
        names = [p.stem for p in paths]
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"video '{p}' not found")
    index, how = match_cameras(names, rig.names)
    warnings: list[str] = []
    if how.startswith("by sorted order"):
        warnings.append(
            "videos matched to calibration cameras by sorted order (names do not match): "
            + ", ".join(f"{n} -> {rig.names[i]}" for n, i in zip(names, index))
        )
    if len(paths) < 2:
        raise ValueError(f"need videos of at least 2 cameras, got {len(paths)}: {[str(p) for p in paths]}")
    rig = rig.select(index).to(dtype=torch.float64)
    V = rig.num_views
    off = np.zeros(V, np.int64)
    for key, k in (sync_offsets or {}).items():
        off[camera_index(key, names, rig.names)] = int(k)
    readers = [_Reader(p, rig, v) for v, p in enumerate(paths)]
    try:
        sizes = np.array([r.size for r in readers])
        if rig.image_size is not None:
            calib = rig.image_size.cpu().numpy()
            for v in np.flatnonzero((sizes != calib).any(-1)):
                msg = (
                    f"video '{paths[v]}' is {sizes[v, 0]}x{sizes[v, 1]} px but camera {rig.names[v]} was "
                    f"calibrated at {calib[v, 0]}x{calib[v, 1]} px; the calibration is used unchanged"
                )
                logger.warning(msg)
                warnings.append(msg)
        # frame f of the result = camera c's frame f + off[c]
        start = max(int(-off.min()), 0 if frames[0] is None else int(frames[0]))
        skip = start + off
        remaining = np.array([r.count for r in readers]) - skip
        T = int(remaining.min())
        if frames[1] is not None:
            T = min(T, int(frames[1]) - start)
        if T <= 0:
            raise ValueError(
                f"no frame to process: videos hold {[r.count for r in readers]} frames, offsets "
                f"{off.tolist()}, start {start}"
            )
        short = [v for v in range(V) if remaining[v] == remaining.min()]
        if (remaining != remaining.min()).any() and (
            frames[1] is None or remaining.min() < frames[1] - start
        ):
            msg = (
                f"videos of different lengths: stopping after {T} frames at the end of the shortest "
                f"({', '.join(f'{paths[v].name} ({readers[v].count} frames)' for v in short)})"
            )
            logger.warning(msg)
            warnings.append(msg)
        for r, n in zip(readers, skip):
            if r.skip(int(n)) < n:
                raise ValueError(f"video '{r.path}': fewer than {n} frames, cannot apply its offset")
        crop = int(crop_px) if crop_px is not None else int(sizes.min())
        S = int(image_size)
        pinhole = replace(rig, dist=None)  # the undistorted frames keep K
        centre_img = sizes / 2.0 - 0.5
        centres = centre_img.copy()
        points: list[np.ndarray] = []
        read = np.zeros(V, np.int64)
        net_device = torch.device(device)
        with tqdm(total=T, desc="infer", unit="frame", disable=not progress, leave=False) as bar:
            t = 0
            while t < T:
                n = min(batch_size, T - t)
                imgs, boxes = [], []
                for _ in range(n):
                    views = []
                    for r in readers:
                        frame = r.read()
                        if frame is None:
                            break
                        views.append(frame)
                    if len(views) < V:
                        ended = readers[len(views)]
                        msg = (
                            f"video '{ended.path}' ended after {read[len(views)] + skip[len(views)]} frames "
                            "(fewer than its header says); stopping there"
                        )
                        logger.warning(msg)
                        warnings.append(msg)
                        T = t + len(imgs)
                        break
                    read += 1
                    box = _boxes(centres, crop)
                    imgs.append([crop_and_resize(f, b, (S, S)) for f, b in zip(views, box)])
                    boxes.append(box)
                if not imgs:
                    break
                B = len(imgs)
                x = normalize_image(
                    np.asarray(imgs), order="bgr", lt_bgr_quirk=lt_bgr_quirk
                )  # (B, V, 3, S, S)
                b_rig = pinhole.expand(B).crop(torch.as_tensor(np.asarray(boxes), dtype=torch.float64))
                b_rig = b_rig.resize((S, S), old_size=(crop, crop))
                P = b_rig.projection_matrices()
                with torch.inference_mode():
                    out = model(
                        torch.from_numpy(x).to(net_device), P.to(net_device, torch.float32), root=None
                    )
                kp3d = out["keypoints_3d"] if isinstance(out, Mapping) else out.keypoints_3d
                kp3d = kp3d.detach().double().cpu().numpy().reshape(B, -1, 3)
                points.append(kp3d)
                if follow_subject:
                    c3d = np.nanmean(kp3d[-1], axis=0)
                    if np.isfinite(c3d).all():
                        px = pinhole.project(torch.from_numpy(c3d[None])).numpy()[:, 0]  # (V, 2)
                        inside = np.isfinite(px).all(-1) & (px >= 0).all(-1) & (px < sizes).all(-1)
                        depth = pinhole.world_to_camera(torch.from_numpy(c3d[None])).numpy()[:, 0, 2] > 0
                        centres = np.where((inside & depth)[:, None], px, centre_img)
                t += B
                bar.update(B)
    finally:
        for r in readers:
            r.close()
    X = np.concatenate(points, 0) if points else np.zeros((0, 0, 3))
    T, J = X.shape[:2]
    fps = [r.fps for r in readers]
    names_j = tuple(f"joint_{j:02d}" for j in range(J))
    if skeleton is not None:
        from mvpose.skeleton import get_skeleton

        sk = get_skeleton(skeleton)
        if sk.num_joints != J:
            raise ValueError(f"skeleton {sk.name!r} has {sk.num_joints} joints but the model gives {J}")
        names_j, skeleton = sk.joint_names, sk.name
    stats = {"frames_read": read, "frames_skipped": skip.astype(np.int64)}
    settings = {
        "mode": "videos",
        "videos": [str(p) for p in paths],
        "camera_mapping": {n: rig.names[v] for v, n in enumerate(names)},
        "camera_matching": how,
        "detection_cameras": names,
        "image_size": S,
        "crop_px": crop,
        "batch_size": int(batch_size),
        "sync_offsets": {rig.names[v]: int(off[v]) for v in range(V) if off[v]},
        "follow_subject": bool(follow_subject),
        "fps": fps[0] if fps and all(f == fps[0] for f in fps) else None,
        "method": "model",
    }
    return TriangulationResult(
        X,
        np.full((T, V, J), np.nan),
        np.isfinite(X).all(-1)[:, None, :].repeat(V, 1),
        np.zeros((T, V), np.int64),
        names_j,
        tuple(rig.names),
        np.arange(start, start + T, dtype=np.int64),
        skeleton,
        stats,
        settings,
        warnings,
    )
