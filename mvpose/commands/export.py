"""``mvpose export``: fill gaps, filter and write 3D joints as JSON, NPZ, TRC, C3D or BVH.

The input is what ``mvpose triangulate`` writes (``.npz`` / ``.json``), or a motion file mvpose
reads (its own JSON/NPZ, TRC, C3D, BVH). See docs/export.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "run_export", "load_input"]

_FILTER_PARAMS = {
    "none": (),
    "butterworth": ("cutoff_hz", "order"),
    "savgol": ("window", "polyorder"),
    "oneeuro": ("min_cutoff", "beta", "d_cutoff", "joint_speed"),
}


def register(subparsers) -> None:
    """Add the ``export`` subcommand."""
    p = subparsers.add_parser(
        "export",
        help="fill gaps, filter and write 3D joints as JSON, NPZ, TRC (OpenSim), C3D or BVH",
        description="Read 3D joints (the .npz/.json of 'mvpose triangulate', or a JSON/NPZ/TRC/C3D/BVH "
        "motion file), interpolate gaps of at most --max-gap frames, optionally filter, and write "
        "the format named by --format or by the suffix of --out. Prints the gap report "
        "(see docs/export.md).",
    )
    p.add_argument("input", type=Path, help="triangulation result (.npz/.json) or motion file")
    p.add_argument("--out", required=True, type=Path, help="output file (.json .npz .trc .c3d .bvh)")
    p.add_argument("--format", choices=("json", "npz", "trc", "c3d", "bvh"), default=None)
    p.add_argument(
        "--fps", type=float, default=None, help="frame rate (Hz); required for triangulation results"
    )
    p.add_argument("--units", choices=("mm", "cm", "m"), default=None, help="default: trc m, bvh cm, else mm")
    g = p.add_argument_group("gaps and filters")
    g.add_argument("--max-gap", type=int, default=10, help="longest gap (frames) to interpolate; 0: none")
    g.add_argument("--interp", default="cubic", choices=("cubic", "linear", "pchip", "akima"))
    g.add_argument("--filter", default="none", choices=tuple(_FILTER_PARAMS))
    g.add_argument("--cutoff-hz", type=float, default=6.0, help="butterworth cut-off (Hz)")
    g.add_argument("--order", type=int, default=4, help="butterworth order (even; zero-phase total)")
    g.add_argument("--window", type=int, default=11, help="savgol window (frames, odd)")
    g.add_argument("--polyorder", type=int, default=3, help="savgol polynomial degree")
    g.add_argument("--min-cutoff", type=float, default=1.0, help="oneeuro cut-off at rest (Hz)")
    g.add_argument("--beta", type=float, default=0.05, help="oneeuro speed coefficient (Hz per mm/s)")
    g.add_argument("--d-cutoff", type=float, default=1.0, help="oneeuro speed-estimate cut-off (Hz)")
    g.add_argument("--joint-speed", action="store_true", help="oneeuro: one cut-off per joint (3D speed)")
    f = p.add_argument_group("format options")
    f.add_argument("--axes", default="opensim", choices=("opensim", "world"), help="trc: Y-up as Pose2Sim")
    f.add_argument("--marker-names", default="joint", choices=("joint", "pose2sim"), help="trc marker names")
    f.add_argument("--skeleton", default=None, help="bvh: joint set (default: the input's, or guessed)")
    f.add_argument("--up-axis", default="z", choices=("x", "y", "z"), help="the world's up axis (bvh, c3d)")
    f.add_argument("--euler-order", default="zxy", help="bvh rotation channel order")
    f.add_argument("--bvh-branches", default="split", choices=("split", "kabsch"))
    f.add_argument(
        "--bvh-stretch", action="store_true", help="bvh: position channels for bone-length changes"
    )
    f.add_argument(
        "--input-axes", default="opensim", choices=("opensim", "world"), help="axes of a .trc input"
    )
    p.set_defaults(func=run_export)


def load_input(path: Path, fps: float | None, input_axes: str = "opensim"):
    """Trajectories from a triangulation result or a motion file; ``fps`` overrides the file's."""
    import json

    import numpy as np

    from mvpose.export import Trajectories, format_of, read
    from mvpose.pipeline.triangulate import FORMAT as RESULT_FORMAT
    from mvpose.pipeline.triangulate import read_result

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input '{path}' not found")
    fmt = format_of(path)
    is_result = False
    if fmt == "npz":
        with np.load(path, allow_pickle=False) as z:
            is_result = "format" in z.files and str(z["format"]) == RESULT_FORMAT
    elif fmt == "json":
        with open(path, encoding="utf-8") as fh:
            try:
                doc = json.load(fh)
            except json.JSONDecodeError as e:
                raise ValueError(f"input '{path}': not valid JSON ({e})") from None
        is_result = isinstance(doc, dict) and doc.get("format") == RESULT_FORMAT
    if is_result:
        if fps is None:
            raise ValueError(f"input '{path}' is a triangulation result without a frame rate: give --fps")
        return Trajectories.from_result(read_result(path), fps, input=str(path))
    traj = read(path, axes=input_axes) if fmt == "trc" else read(path)
    return traj if fps is None else traj.replace(fps=fps)


def run_export(args: argparse.Namespace) -> int:
    import numpy as np

    from mvpose.export import DEFAULT_UNITS, format_of, write
    from mvpose.filters import smooth_trajectories

    fmt = format_of(args.out, args.format)
    traj = load_input(args.input, args.fps, args.input_axes)
    params = {k: getattr(args, k) for k in _FILTER_PARAMS[args.filter]}
    smoothed, report = smooth_trajectories(
        traj.points_mm,
        traj.fps,
        filter=args.filter,
        max_gap=args.max_gap,
        interpolation=args.interp,
        joint_names=traj.joint_names,
        **params,
    )
    settings = {"max_gap": args.max_gap, "interpolation": args.interp, "filter": args.filter, **params}
    traj = traj.replace(
        points_mm=smoothed,
        filled=report.filled_mask() | (traj.filled if traj.filled is not None else False),
        meta={**traj.meta, "export": settings},
    )
    units = args.units or DEFAULT_UNITS[fmt]
    options: dict = {"units": units}
    if fmt == "trc":
        options |= {"axes": args.axes, "marker_names": args.marker_names}
    elif fmt == "c3d":
        options["up_axis"] = args.up_axis
    elif fmt == "bvh":
        options |= {
            "skeleton": args.skeleton,
            "up_axis": args.up_axis,
            "euler_order": args.euler_order,
            "branches": args.bvh_branches,
            "stretch": args.bvh_stretch,
        }
    result = write(args.out, traj, format=fmt, **options)

    print(report.format(traj.frame_indices))
    described = "none" if args.filter == "none" else ", ".join(f"{k}={v}" for k, v in params.items())
    print(f"filter: {args.filter}" + ("" if args.filter == "none" else f" ({described})"))
    if fmt == "bvh":
        summary = result.error_summary()
        med = np.nanmedian([v["median_mm"] for v in summary.values()])
        worst = max(summary, key=lambda n: np.nan_to_num(summary[n]["max_mm"]))
        print(
            f"bvh: {len(result.joint_names)} joints ({int(result.virtual.sum())} split), forward kinematics "
            f"vs input: median {med:.1f} mm, worst {worst} max {summary[worst]['max_mm']:.1f} mm; "
            f"frames with held rotations: {int(result.held.any(1).sum())}"
        )
        for note in result.notes:
            print(f"bvh: {note}")
    shape = f"{traj.num_frames} frames x {traj.num_joints} joints at {traj.fps:g} fps"
    print(f"{shape} written to {args.out} ({fmt}, {units})")
    return 0
