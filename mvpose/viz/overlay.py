"""Reprojection overlays of a triangulated capture: every camera's video (or a blank canvas of the
calibrated image size) with the 3D joints projected through the calibration and, optionally, the
raw 2D detections (used ones ringed, rejected ones crossed).

Inputs are duck-typed: ``result`` is shaped like :class:`mvpose.pipeline.triangulate.TriangulationResult`,
``detections`` like :class:`mvpose.pipeline.detections.Detections`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from mvpose.geometry.camera import CameraRig
from mvpose.skeleton import Skeleton
from mvpose.viz.draw2d import draw_markers, draw_skeleton_2d
from mvpose.viz.images import put_label, tile_images
from mvpose.viz.style import DETECTION_RGB, REJECTED_RGB, as_skeleton
from mvpose.viz.video import VIDEO_SUFFIXES, VideoWriter, read_frames, video_info

__all__ = [
    "project_result",
    "subject_detections",
    "match_videos",
    "draw_overlay",
    "render_overlay",
]

logger = logging.getLogger(__name__)

_CANVAS_RGB = (40, 40, 40)


def _rig_for(result, rig: CameraRig) -> CameraRig:
    """The calibration cameras of ``result`` in its camera order (``ValueError`` naming the missing)."""
    names = list(result.camera_names)
    missing = [n for n in names if n not in rig.names]
    if missing:
        raise ValueError(
            f"calibration cameras {list(rig.names)} do not include the result's cameras {missing}: "
            "use the calibration the result was triangulated with"
        )
    return rig.select([rig.names.index(n) for n in names])


def project_result(result, rig: CameraRig, frames: np.ndarray | None = None) -> np.ndarray:
    """3D joints of ``result`` projected into each of its cameras, with lens distortion.

    Args:
        result: a triangulation result (``points_3d_mm (T, J, 3)``, ``camera_names``).
        rig: the calibration (any superset of the result's cameras).
        frames: positions ``(F,)`` in ``result`` (default all ``T``).

    Returns:
        ``(F, V, J, 2)`` float64 px of the calibrated images; NaN for joints not triangulated or
        behind the camera.
    """
    r = _rig_for(result, rig).to(dtype=torch.float64)
    X = np.asarray(result.points_3d_mm, np.float64)
    if frames is not None:
        X = X[np.asarray(frames)]
    Xt = torch.from_numpy(np.ascontiguousarray(X))
    with torch.no_grad():
        px = r.project(Xt).numpy()
        depth = r.world_to_camera(Xt)[..., 2].numpy()
    ok = np.isfinite(px).all(-1) & (depth > 1e-6)
    return np.where(ok[..., None], px, np.nan)


def subject_detections(result, detections, frames: np.ndarray | None = None) -> np.ndarray:
    """The subject's raw 2D detections, aligned with ``result``'s frames and cameras.

    The person of each camera and frame is ``result.person_index``; detection cameras are matched
    to the result's cameras through ``result.settings["camera_mapping"]`` (written by
    ``triangulate_capture``), else by identical names; frames by frame number.

    Returns:
        ``(F, V, J, 3)`` x px, y px, confidence; NaN where the camera, frame or person is missing.
    """
    kp = np.asarray(detections.keypoints, np.float64)  # (Vd, Td, P, J, 3)
    if kp.ndim == 4:
        kp = kp[:, :, None]
    pos = np.arange(len(result.frame_indices)) if frames is None else np.asarray(frames)
    F, V, J = len(pos), len(result.camera_names), kp.shape[3]
    mapping = dict(getattr(result, "settings", {}).get("camera_mapping", {}))
    det_names = list(detections.camera_names)
    out = np.full((F, V, J, 3), np.nan)
    fi_det = {int(n): i for i, n in enumerate(np.asarray(detections.frame_indices))}
    t_det = np.array([fi_det.get(int(n), -1) for n in np.asarray(result.frame_indices)[pos]])
    person = np.asarray(result.person_index)[pos]  # (F, V)
    found = []
    for v, cam in enumerate(result.camera_names):
        d = [i for i, n in enumerate(det_names) if mapping.get(n, n) == cam]
        if not d:
            continue
        found.append(cam)
        ok = (t_det >= 0) & (person[:, v] >= 0) & (person[:, v] < kp.shape[2])
        out[ok, v] = kp[d[0], t_det[ok], person[ok, v]]
    if not found:
        raise ValueError(
            f"detections cameras {det_names} match none of the result's cameras {list(result.camera_names)} "
            "(neither through the result's camera_mapping nor by name)"
        )
    return out


def match_videos(videos, camera_names: Sequence[str]) -> dict[str, Path]:
    """Videos of the cameras: ``videos`` is a folder (one video per camera, matched to the camera
    names by name, else by camera number: ``cam01.mp4`` <-> ``cam_01``), or a list of files in
    camera order. Cameras without a video are left out (logged)."""
    if isinstance(videos, str | Path):
        folder = Path(videos)
        if not folder.is_dir():
            raise FileNotFoundError(f"videos folder '{folder}' not found")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if not files:
            raise ValueError(f"videos folder '{folder}': no video files ({', '.join(VIDEO_SUFFIXES)})")
        from mvpose.pipeline.detections import match_cameras  # the rules `mvpose triangulate` uses

        index, how = match_cameras([p.stem for p in files], list(camera_names))
        logger.info(
            "videos matched %s: %s",
            how,
            ", ".join(f"{p.name} -> {camera_names[i]}" for p, i in zip(files, index)),
        )
        out = {camera_names[i]: p for p, i in zip(files, index)}
    else:
        files = [Path(p) for p in videos]
        if len(files) != len(camera_names):
            raise ValueError(
                f"{len(files)} videos given for {len(camera_names)} cameras {list(camera_names)}"
            )
        out = dict(zip(camera_names, files))
    for p in out.values():
        if not p.is_file():
            raise FileNotFoundError(f"video '{p}' not found")
    missing = [c for c in camera_names if c not in out]
    if missing:
        logger.warning("no video for cameras %s: drawn on a blank canvas", ", ".join(missing))
    return out


def draw_overlay(
    image: np.ndarray,
    reprojected_px: np.ndarray,
    skeleton: str | Skeleton | None,
    detections_px: np.ndarray | None = None,
    used: np.ndarray | None = None,
    label: str | None = None,
) -> np.ndarray:
    """One camera frame: the reprojected skeleton (left blue, right red), the detections used by the
    triangulation as yellow rings and the ones it rejected as magenta crosses.

    Args:
        image: uint8 RGB ``(H, W, 3)``; pixels of ``reprojected_px`` and ``detections_px`` refer to it.
        reprojected_px: ``(J, 2)``; NaN joints are skipped.
        detections_px: ``(J, 2)`` raw detections (NaN: none / below the confidence threshold).
        used: ``(J,)`` bool, the detections the 3D joint was solved from (default all).
        label: text at the top left.

    Returns:
        the drawn copy.
    """
    img = np.array(image, copy=True)
    if detections_px is not None:  # rings under the skeleton, crosses over it
        det = np.asarray(detections_px, np.float64)
        u = np.ones(len(det), bool) if used is None else np.asarray(used, bool)
        draw_markers(img, det[u], DETECTION_RGB, "ring")
    img = draw_skeleton_2d(img, reprojected_px, skeleton)
    if detections_px is not None:
        draw_markers(img, det[~u], REJECTED_RGB, "cross")
    if label:
        put_label(img, label)
    return img


def _scale_for(video_wh: tuple[int, int], calib_wh: tuple[int, int] | None, camera: str) -> float:
    """Calibration px -> video px: 1, or the factor of a uniformly resized video."""
    if calib_wh is None or tuple(video_wh) == tuple(calib_wh):
        return 1.0
    sx, sy = video_wh[0] / calib_wh[0], video_wh[1] / calib_wh[1]
    if abs(sx - sy) < 0.01 and abs(sx - 1) > 0.01:
        logger.info(
            "camera %s: video %dx%d is the calibrated %dx%d resized by %.3f", camera, *video_wh, *calib_wh, sx
        )
        return float((sx + sy) / 2)
    logger.warning(
        "camera %s: video %dx%d differs from the calibrated image %dx%d; joints drawn at calibration pixels",
        camera,
        *video_wh,
        *calib_wh,
    )
    return 1.0


def _mosaic_cols(sizes: list[tuple[int, int]]) -> int:
    """Columns making the mosaic closest to 16:9."""
    w, h = np.mean([s[0] for s in sizes]), np.mean([s[1] for s in sizes])
    n = len(sizes)
    return min(range(1, n + 1), key=lambda c: abs(np.log((c * w) / (-(-n // c) * h) / (16 / 9))))


def render_overlay(
    result,
    rig: CameraRig,
    out,
    *,
    videos=None,
    detections=None,
    frames: np.ndarray | None = None,
    fps: float | None = None,
    fmt: str = "mp4",
    max_size: int | None = 1280,
    mosaic: bool = False,
    skeleton: str | Skeleton | None = None,
) -> dict[str, Path]:
    """Write the reprojection overlay of every camera of ``result``.

    Args:
        result: a triangulation result (``mvpose.pipeline.triangulate.read_result``).
        rig: the calibration it was triangulated with (``mvpose.calib.load_rig``).
        out: output folder.
        videos: folder with one video per camera, or a list in the result's camera order; frame
            ``n`` of a video is frame number ``n`` of the result. ``None``: a blank canvas of the
            calibrated image size.
        detections: raw 2D detections (``mvpose.pipeline.detections.load_detections``), or ``None``.
        frames: positions in ``result`` to draw (default all).
        fps: frame rate of the output (default the first video's, else 30).
        fmt: ``"mp4"``, ``"gif"`` or ``"png"`` (a folder of frames per camera).
        max_size: longest side of each camera's output, px (``None``: full size).
        mosaic: also write all cameras tiled into one ``overlay_mosaic`` output.
        skeleton: joint set (default ``result.skeleton``).

    Returns:
        ``{camera name (or "mosaic"): path}``.
    """
    if fmt not in ("mp4", "gif", "png"):
        raise ValueError(f"fmt must be 'mp4', 'gif' or 'png', got {fmt!r}")
    out = Path(out)
    cams = list(result.camera_names)
    T, J = np.asarray(result.points_3d_mm).shape[:2]
    pos = np.arange(T) if frames is None else np.asarray(frames, np.int64)
    if len(pos) == 0:
        raise ValueError("render_overlay: no frames selected")
    sk = as_skeleton(skeleton if skeleton is not None else result.skeleton, J)
    numbers = np.asarray(result.frame_indices)[pos]
    if len(numbers) > 1 and not (np.diff(numbers) > 0).all():
        raise ValueError("render_overlay: the frames to draw must have increasing frame numbers")
    px = project_result(result, rig, pos)  # (F, V, J, 2)
    det = None if detections is None else subject_detections(result, detections, pos)
    min_conf = float(getattr(result, "settings", {}).get("min_confidence", 0.0))
    used = np.asarray(result.views_used, bool)[pos]
    err = np.asarray(result.reprojection_error_px, np.float64)[pos]
    vid = {} if videos is None else match_videos(videos, cams)
    calib = _rig_for(result, rig).image_size
    calib_wh = [None if calib is None else tuple(int(x) for x in calib[v].tolist()) for v in range(len(cams))]
    sizes, scales, sources = [], [], []
    for v, cam in enumerate(cams):
        if cam in vid:
            info = video_info(vid[cam])
            wh = (info["width"], info["height"])
            scales.append(_scale_for(wh, calib_wh[v], cam))
            sources.append(read_frames(vid[cam], numbers))
            fps = fps or (info["fps"] if info["fps"] > 0 else None)
        else:
            if calib_wh[v] is None:
                raise ValueError(
                    f"camera {cam}: the calibration has no image size; give its video (--videos)"
                )
            wh = calib_wh[v]
            scales.append(1.0)
            sources.append(None)
        shrink = 1.0 if not max_size else min(1.0, max_size / max(wh))
        sizes.append((max(2, int(round(wh[0] * shrink))), max(2, int(round(wh[1] * shrink)))))
        scales[-1] *= shrink
    fps = fps or 30.0
    suffix = {"mp4": ".mp4", "gif": ".gif", "png": ""}[fmt]
    writers = {cam: VideoWriter(out / f"overlay_{cam}{suffix}", fps) for cam in cams}
    mosaic_writer = VideoWriter(out / f"overlay_mosaic{suffix}", fps) if mosaic else None
    cols = _mosaic_cols(sizes)
    for f, n in enumerate(numbers):
        tiles = []
        for v, cam in enumerate(cams):
            frame = None
            if sources[v] is not None:
                _, frame = next(sources[v])  # frames come in the order of `numbers`
            W, H = sizes[v]
            if frame is None:
                img = np.empty((H, W, 3), np.uint8)
                img[:] = _CANVAS_RGB
            else:
                img = (
                    frame
                    if frame.shape[:2] == (H, W)
                    else cv2.resize(frame, (W, H), interpolation=cv2.INTER_LINEAR)
                )
            d_px, u = None, None
            if det is not None:
                conf_ok = np.nan_to_num(det[f, v, :, 2], nan=-1.0) >= max(min_conf, 1e-12)
                d_px = np.where(conf_ok[:, None], det[f, v, :, :2], np.nan) * scales[v]
                u = used[f, v]
            e = err[f, v][used[f, v] & np.isfinite(err[f, v])]
            text = f"{cam}  frame {int(n)}" + (f"  median {np.median(e):.1f} px" if e.size else "")
            img = draw_overlay(img, px[f, v] * scales[v], sk, d_px, u, text)
            writers[cam].write(img, number=int(n))
            tiles.append(img)
        if mosaic_writer is not None:
            grid = tile_images(tiles, cols=cols, pad_px=2, background=(0, 0, 0))
            if max_size and max(grid.shape[:2]) > max_size:
                s = max_size / max(grid.shape[:2])
                grid = cv2.resize(
                    grid,
                    (int(grid.shape[1] * s) // 2 * 2, int(grid.shape[0] * s) // 2 * 2),
                    interpolation=cv2.INTER_LINEAR,
                )
            mosaic_writer.write(grid, number=int(n))
    paths = {cam: w.close() for cam, w in writers.items()}
    if mosaic_writer is not None:
        paths["mosaic"] = mosaic_writer.close()
    return paths
