"""``mvpose infer``: 3D joints from a calibrated capture, from 2D detections or from videos.

* ``--detections DIR``: OpenPose/COCO JSON folders (one per camera) or an ``.npz``, triangulated with
  the engine of ``mvpose triangulate`` (single person), or with ``--multi-person``: people matched
  across views, triangulated and tracked (:mod:`mvpose.pipeline.multiperson`).
* ``--videos DIR --checkpoint CKPT``: a trained multi-view model run on the videos
  (:func:`mvpose.pipeline.videos.infer_videos`).

See docs/infer.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "infer",
        help="3D joints (mm) from 2D detections (single or multi-person) or from videos with a model",
        description="Triangulate per-camera 2D detections (--detections), or run a trained multi-view "
        "model on calibrated videos (--videos with --checkpoint). See docs/infer.md.",
    )
    p.add_argument("--calib", required=True, type=Path, help="calibration file (any format load_rig reads)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--detections", type=Path, help="folder of per-camera OpenPose JSON folders, or .npz")
    src.add_argument("--videos", type=Path, help="folder with one video per camera (file stem = camera)")
    p.add_argument("--out", required=True, type=Path, help="output .npz or .json")
    p.add_argument("--skeleton", default=None, help="keypoint set (detections: default from the count)")
    p.add_argument("--subject", default=None, help="rig to use when the calibration file holds several")
    p.add_argument(
        "--sync-offsets",
        default=None,
        metavar="CAM=FRAMES,...",
        help="integer frame offsets: frame f of the capture is frame f+k of camera CAM",
    )
    p.add_argument("--frames", default=None, metavar="A:B", help="frame numbers A (included) to B (excluded)")
    p.add_argument(
        "--filter",
        default=None,
        metavar="NAME[:K=V,...]",
        help="temporal filter of the 3D joints (mvpose.filters: butterworth, savgol, oneeuro), "
        "e.g. butterworth:cutoff_hz=6,order=4",
    )
    p.add_argument("--fps", type=float, default=None, help="frame rate (Hz) for --filter (videos: read)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    t = p.add_argument_group("triangulation (--detections)")
    t.add_argument("--method", default="robust+refine", choices=("dlt", "robust", "refine", "robust+refine"))
    t.add_argument("--min-confidence", type=float, default=0.3, help="ignore keypoints below this confidence")
    t.add_argument("--threshold-px", type=float, default=25.0, help="outlier threshold of the robust methods")
    m = p.add_argument_group("multi-person (--detections --multi-person)")
    m.add_argument(
        "--multi-person", action="store_true", help="several people: associate, triangulate, track"
    )
    m.add_argument("--max-people", type=int, default=None, help="at most this many people per frame")
    m.add_argument("--min-views", type=int, default=2, help="views a person needs")
    m.add_argument("--epipolar-threshold-px", type=float, default=30.0)
    m.add_argument("--reprojection-threshold-px", type=float, default=30.0)
    m.add_argument("--max-distance-mm", type=float, default=500.0, help="tracking gate (mean joint distance)")
    m.add_argument("--max-missing", type=int, default=10, help="frames a track may be unseen")
    m.add_argument("--min-track-frames", type=int, default=1, help="drop shorter tracks")
    v = p.add_argument_group("model (--videos)")
    v.add_argument("--checkpoint", type=Path, default=None, help="mvpose training checkpoint")
    v.add_argument("--image-size", type=int, default=None, help="model input side (default: its config, 256)")
    v.add_argument(
        "--crop-px", type=int, default=None, help="square crop side in the frame (default: shorter side)"
    )
    v.add_argument("--batch-size", type=int, default=8)
    v.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    v.add_argument("--no-follow", action="store_true", help="always crop around the image centre")
    v.add_argument("--lt-bgr-quirk", action="store_true", help="BGR input with RGB statistics (official LT)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mvpose.pipeline.detections import parse_frame_range, parse_sync_offsets

    offsets = parse_sync_offsets(args.sync_offsets)
    frames = parse_frame_range(args.frames)
    if args.videos is not None:
        result, summary = _videos(args, offsets, frames)
    else:
        if args.checkpoint is not None:
            raise ValueError("--checkpoint goes with --videos; --detections are triangulated without a model")
        result, summary = _detections(args, offsets, frames)
    if args.filter:
        from mvpose.pipeline.triangulate import temporal_filter

        fps = args.fps or result.settings.get("fps")
        result.points_3d_mm, msg = temporal_filter(result.points_3d_mm, args.filter, fps, result.joint_names)
        result.settings["filter"] = {"spec": args.filter, "fps": fps, "note": msg}
        summary += f"\n{msg} (reprojection errors are those of the unfiltered joints)"
    from mvpose.pipeline.triangulate import write_result

    out = write_result(result, args.out)
    print(summary)
    print(f"3D joints written to {out}")
    return 0


def _detections(args, offsets, frames):
    from mvpose.calib import load_rig
    from mvpose.pipeline.detections import load_detections
    from mvpose.pipeline.triangulate import format_summary, prepare_detections, triangulate_capture

    rig = load_rig(args.calib, subject=args.subject)
    det = load_detections(args.detections, args.skeleton)
    det = prepare_detections(det, rig.names, offsets, frames)
    settings = {"calibration": str(args.calib), "detections": str(args.detections)}
    if offsets:
        settings["sync_offsets"] = offsets
    if args.multi_person:
        from mvpose.pipeline.multiperson import format_multiperson_summary, infer_people

        result = infer_people(
            rig,
            det,
            method=args.method,
            min_confidence=args.min_confidence,
            threshold_px=args.threshold_px,
            min_views=args.min_views,
            epipolar_threshold_px=args.epipolar_threshold_px,
            reprojection_threshold_px=args.reprojection_threshold_px,
            max_people=args.max_people,
            max_distance_mm=args.max_distance_mm,
            max_missing=args.max_missing,
            min_track_frames=args.min_track_frames,
            progress=not args.quiet,
        )
        result.settings.update(settings)
        return result, format_multiperson_summary(result)
    if args.max_people not in (None, 1):
        raise ValueError("--max-people needs --multi-person (single-person mode keeps one person)")
    result = triangulate_capture(
        rig,
        det,
        method=args.method,
        min_confidence=args.min_confidence,
        threshold_px=args.threshold_px,
        progress=not args.quiet,
    )
    result.settings.update(settings)
    return result, format_summary(result)


def _videos(args, offsets, frames):
    import torch

    from mvpose.calib import load_rig
    from mvpose.pipeline.videos import find_videos, infer_videos

    if args.checkpoint is None:
        raise ValueError("--videos needs --checkpoint (a trained multi-view model)")
    if args.multi_person:
        raise ValueError("--multi-person works on --detections; a multi-view model sees one subject")
    if not args.checkpoint.exists():
        raise FileNotFoundError(f"checkpoint '{args.checkpoint}' not found")
    from mvpose.engine import load_model

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(args.checkpoint, map_location=device)
    cfg = getattr(model, "config", None)
    image_size = args.image_size or getattr(getattr(cfg, "data", None), "image_size", None) or 256
    rig = load_rig(args.calib, subject=args.subject)
    result = infer_videos(
        rig,
        find_videos(args.videos),
        model,
        image_size=image_size,
        crop_px=args.crop_px,
        batch_size=args.batch_size,
        sync_offsets=offsets,
        frames=frames,
        follow_subject=not args.no_follow,
        device=device,
        lt_bgr_quirk=args.lt_bgr_quirk,
        skeleton=args.skeleton,
        progress=not args.quiet,
    )
    result.settings.update({"calibration": str(args.calib), "checkpoint": str(args.checkpoint)})
    return result, format_video_summary(result)


def format_video_summary(result) -> str:
    import numpy as np

    s = result.settings
    T, J = result.points_3d_mm.shape[:2]
    span = f"{result.frame_indices[0]}..{result.frame_indices[-1]}" if T else "-"
    lines = [
        f"{T} frames ({span}), {len(result.camera_names)} cameras, {J} joints; input {s['image_size']} px "
        f"from {s['crop_px']} px crops",
        f"{'camera':<12} {'video':<24} {'skipped':>8} {'read':>6}",
    ]
    for v, name in enumerate(result.camera_names):
        video = Path(s["videos"][v]).name
        lines.append(
            f"{name:<12} {video:<24} {int(result.camera_stats['frames_skipped'][v]):>8d} "
            f"{int(result.camera_stats['frames_read'][v]):>6d}"
        )
    lines.append(f"joints finite: {100 * np.isfinite(result.points_3d_mm).all(-1).mean():.1f}%")
    if result.warnings:
        lines += ["", f"warnings ({len(result.warnings)}):", *[f"  - {w}" for w in result.warnings]]
    return "\n".join(lines)
