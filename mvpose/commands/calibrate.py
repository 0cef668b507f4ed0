"""``mvpose calibrate``: intrinsics and extrinsics of a rig from checkerboard or ChArUco recordings."""

from __future__ import annotations

import argparse
from pathlib import Path

BOARD_HELP = (
    "board spec; COLSxROWS counts squares (not inner corners): 'checkerboard:COLSxROWS:SQUARE_MM' "
    "(e.g. checkerboard:10x7:25) or 'charuco:COLSxROWS:SQUARE_MM:MARKER_MM:DICT[:legacy]' "
    "(e.g. charuco:7x5:40:30:DICT_4X4_50)"
)


def report_path(out: Path, report: Path | None) -> Path:
    """Where the JSON report goes: ``--report``, else ``<out stem>_report.json`` beside ``out``
    (inside ``out`` when it is an EasyMocap folder)."""
    if report is not None:
        return report
    if out.suffix == "" or out.is_dir():
        return out / "calibration_report.json"
    return out.with_name(out.stem + "_report.json")


def _run(args: argparse.Namespace) -> int:
    from mvpose.calib import load_rig, save_rig
    from mvpose.calib.board import parse_board
    from mvpose.calib.calibrate import calibrate_rig, detect_cameras

    board = parse_board(args.board)
    cameras = [c.strip() for c in args.cameras.split(",") if c.strip()] if args.cameras else None
    known = load_rig(args.intrinsics) if args.intrinsics is not None else None
    dets = detect_cameras(
        board,
        images=args.images,
        videos=args.videos,
        every=args.every,
        max_frames=args.max_frames or None,
        cameras=cameras,
        checkerboard_method=args.checkerboard_detector,
    )
    result = calibrate_rig(
        dets,
        board,
        intrinsics_only=args.intrinsics_only,
        bundle_adjust_extrinsics=args.bundle_adjust,
        reference=args.reference if args.reference is not None else 0,
        world=args.world,
        world_frame=args.world_frame,
        refine_intrinsics=args.refine_intrinsics,
        fix_k3=args.fix_k3,
        loss=args.loss,
        loss_scale_px=args.loss_scale_px,
        min_frames=args.min_frames,
        known_intrinsics=known,
    )
    out = args.out
    (out if out.suffix == "" else out.parent).mkdir(parents=True, exist_ok=True)
    save_rig(result.rig, out, format=args.format)
    rep = result.report.write_json(report_path(out, args.report))
    print(result.report.format_table())
    print(f"calibration written to {out}; report to {rep}")
    return 0


#: as mvpose.calib.calibrate.LOSSES and mvpose.calib.board.CHECKERBOARD_METHODS (kept here: no heavy imports)
LOSSES = ("linear", "huber", "soft_l1", "cauchy", "arctan")
CHECKERBOARD_METHODS = ("classic", "sb", "classic+sb")


def register(sub) -> None:
    p = sub.add_parser(
        "calibrate",
        help="calibrate cameras (intrinsics, extrinsics, bundle adjustment) from board recordings",
        description="Detect a checkerboard or ChArUco board in each camera's images or video, calibrate "
        "each camera's intrinsics (OpenCV k1 k2 p1 p2 k3), chain the cameras through frames in which they "
        "see the board together, refine everything by bundle adjustment, and write the rig (mm). Frame "
        "index = time: the k-th image of every camera folder (or frame k of every video) is one instant. "
        "See docs/calibrate.md.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, help="folder with one sub-folder of images per camera")
    src.add_argument("--videos", type=Path, help="folder with one video per camera (file stem = camera name)")
    p.add_argument("--board", required=True, help=BOARD_HELP)
    p.add_argument("--out", required=True, type=Path, help="rig file: .toml, .json or a folder (EasyMocap)")
    p.add_argument("--format", default=None, help="output format (default: from --out)")
    p.add_argument("--report", type=Path, default=None, help="JSON report (default: <out>_report.json)")
    p.add_argument("--intrinsics-only", action="store_true", help="stop after the intrinsics (R = I, t = 0)")
    p.add_argument(
        "--bundle-adjust",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="refine extrinsics and board poses by bundle adjustment (default: on)",
    )
    p.add_argument("--every", type=int, default=1, help="search every N-th frame (default 1)")
    p.add_argument(
        "--max-frames",
        type=int,
        default=200,
        help="search at most this many frames per camera, spread evenly (default 200; 0 = all)",
    )
    p.add_argument("--cameras", default=None, help="comma-separated camera names (default: all)")
    p.add_argument("--reference", default=None, help="reference camera, held fixed (default: the first)")
    p.add_argument(
        "--world",
        choices=("camera", "board"),
        default="camera",
        help="world frame: the reference camera, or the board at --world-frame (Z out of its printed face)",
    )
    p.add_argument(
        "--world-frame",
        type=int,
        default=None,
        help="frame index of the board that defines the world (default: first seen by the reference)",
    )
    p.add_argument(
        "--refine-intrinsics", action="store_true", help="bundle adjustment refines K and dist too"
    )
    p.add_argument("--fix-k3", action="store_true", help="keep k3 = 0 (fewer views, mild distortion)")
    p.add_argument("--loss", choices=LOSSES, default="linear", help="robust loss of the bundle adjustment")
    p.add_argument(
        "--loss-scale-px", type=float, default=1.0, help="inlier scale of the robust loss in px (default 1)"
    )
    p.add_argument("--min-frames", type=int, default=4, help="fewest views per camera for intrinsics")
    p.add_argument(
        "--intrinsics",
        type=Path,
        default=None,
        help="calibration file whose K and dist to keep (matched by camera name); only extrinsics are solved",
    )
    p.add_argument(
        "--checkerboard-detector",
        choices=CHECKERBOARD_METHODS,
        default="classic",
        help="classic: findChessboardCorners (fast); sb: findChessboardCornersSB (robust to blur, slow)",
    )
    p.set_defaults(func=_run)
