"""``mvpose viz overlay|animation|errors|all``: pictures of a triangulated capture (docs/viz.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

WHAT = ("overlay", "animation", "errors", "all")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--result", required=True, type=Path, help="result of `mvpose triangulate` (.npz or .json)"
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--frames", default=None, help="frame numbers a:b or a:b:step (default all)")
    p.add_argument("--skeleton", default=None, help="joint set (default: the result's)")


def _add_overlay(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument(
        "--calib", required=required, type=Path, help="calibration the result was triangulated with"
    )
    p.add_argument(
        "--videos", type=Path, default=None, help="folder with one video per camera (default: blank)"
    )
    p.add_argument(
        "--detections", type=Path, default=None, help="raw 2D detections to draw (as for triangulate)"
    )
    p.add_argument("--subject", default=None, help="rig to use when the calibration file holds several")
    p.add_argument(
        "--max-size", type=int, default=1280, help="longest side of each camera's picture, px (0: full)"
    )
    p.add_argument("--mosaic", action="store_true", help="also write all cameras tiled in one video")


def _add_animation(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=560, help="side of the 3D picture, px")
    p.add_argument("--up", default="z", choices=("z", "y", "-y", "-z"), help="the world's up axis")
    p.add_argument("--follow", action="store_true", help="the view follows the subject")


def register(subparsers) -> None:
    """Add ``mvpose viz`` and its subcommands."""
    viz = subparsers.add_parser(
        "viz",
        help="pictures of a triangulated capture: reprojection overlays, 3D animation, error plots",
        description="Pictures of a `mvpose triangulate` result (docs/viz.md).",
    ).add_subparsers(dest="viz_command", required=True)

    p = viz.add_parser(
        "overlay", help="per camera: the 3D joints reprojected on the video (or a blank canvas)"
    )
    _add_common(p)
    _add_overlay(p, required=True)
    p.add_argument(
        "--fps", type=float, default=None, help="output frame rate (default: the videos', else 30)"
    )
    p.add_argument("--format", default="mp4", choices=("mp4", "gif", "png"), help="png: a folder of frames")
    p.set_defaults(func=run, what="overlay")

    p = viz.add_parser("animation", help="3D skeleton animation (MP4/GIF) and a PNG strip of key frames")
    _add_common(p)
    _add_animation(p)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--format", default="mp4", choices=("mp4", "gif"))
    p.set_defaults(func=run, what="animation")

    p = viz.add_parser("errors", help="reprojection error and exclusion per camera and joint (PNG + CSV)")
    _add_common(p)
    p.set_defaults(func=run, what="errors")

    p = viz.add_parser("all", help="errors, animation and (with --calib) overlays")
    _add_common(p)
    _add_overlay(p, required=False)
    _add_animation(p)
    p.add_argument("--fps", type=float, default=None, help="frame rate (default: the videos', else 30)")
    p.add_argument("--format", default="mp4", choices=("mp4", "gif"))
    p.set_defaults(func=run, what="all")


def run(args: argparse.Namespace) -> int:
    from mvpose.pipeline.triangulate import read_result
    from mvpose.viz.frames import select_frames, slice_result

    result = read_result(args.result)
    pos = select_frames(result.frame_indices, args.frames)
    result = slice_result(result, pos)
    skeleton = args.skeleton or result.skeleton
    out = Path(args.out)
    written: dict[str, Path] = {}
    if args.what in ("errors", "all"):
        from mvpose.viz.errors import write_error_report

        written.update(write_error_report(result, out, title=f"{args.result.name}: reprojection errors"))
    if args.what in ("animation", "all"):
        from mvpose.viz.animation import skeleton_strip, write_skeleton_animation
        from mvpose.viz.images import write_png

        common = {"frame_numbers": result.frame_indices, "up": args.up}
        written["strip"] = write_png(
            out / "skeleton_3d.png",
            skeleton_strip(result.points_3d_mm, skeleton, title=args.result.name, **common),
        )
        written["animation"] = write_skeleton_animation(
            out / f"skeleton_3d.{args.format}",
            result.points_3d_mm,
            skeleton,
            fps=args.fps or 30.0,
            size_px=args.size,
            follow=args.follow,
            title=args.result.name,
            **common,
        )
    if args.what == "overlay" or (args.what == "all" and args.calib is not None):
        from mvpose.calib import load_rig
        from mvpose.viz.overlay import render_overlay

        detections = None
        if args.detections is not None:
            from mvpose.pipeline.detections import load_detections

            detections = load_detections(args.detections, skeleton)
        paths = render_overlay(
            result,
            load_rig(args.calib, subject=args.subject),
            out,
            videos=args.videos,
            detections=detections,
            fps=args.fps,
            fmt=args.format,
            max_size=args.max_size or None,
            mosaic=args.mosaic,
            skeleton=skeleton,
        )
        written.update({f"overlay {k}": v for k, v in paths.items()})
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0
