"""The ``mvpose`` command line: thin subcommands that parse, call the library and print."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]

#: modules of :mod:`mvpose.commands`, each with ``register(subparsers)`` adding its subcommand(s)
COMMAND_MODULES: tuple[str, ...] = ("eval", "curves", "viz", "export", "infer", "calibrate")
#: benchmarks in :mod:`mvpose.bench` with ``main(args) -> int`` (args: what, data, out, repeats, seed, ...)
BENCH_MODULES: tuple[str, ...] = ("filters", "studio", "realmotion", "temporal")


def _cmd_triangulate(args: argparse.Namespace) -> int:
    from mvpose.pipeline.triangulate import format_summary, triangulate_capture, write_result

    result = triangulate_capture(
        calib=args.calib,
        detections=args.detections,
        skeleton=args.skeleton,
        method=args.method,
        min_confidence=args.min_confidence,
        threshold_px=args.threshold_px,
        subject=args.subject,
        progress=not args.quiet,
    )
    out = write_result(result, args.out)
    print(format_summary(result))
    print(f"3D joints written to {out}")
    return 0


def _cmd_example(args: argparse.Namespace) -> int:
    from mvpose.pipeline.example import write_example

    paths = write_example(args.out, seed=args.seed, num_frames=args.frames)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def _cmd_export_sequences(args: argparse.Namespace) -> int:
    from mvpose.calib import ring_rig
    from mvpose.data.sequences import NoiseConfig, export_sequences

    motions: list = [str(p) for p in args.motion] + [
        f"procedural:{args.seed + i}" for i in range(args.procedural)
    ]
    if not motions:
        raise ValueError("give --motion FILE (BVH/AMC) and/or --procedural N")
    noise = NoiseConfig(
        sigma_px=args.sigma_px,
        outlier_rate=args.outlier_rate,
        swap_rate=args.swap_rate,
        drop_rate=args.drop_rate,
        seed=args.seed,
    )
    rig = args.calib if args.calib is not None else ring_rig()
    paths = export_sequences(
        motions, rig, args.out, noise=noise, num_frames=args.frames, subject=args.subject
    )
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def _studio_kwargs(args: argparse.Namespace) -> dict:
    kw = {"image_size": (args.image_size, args.image_size)}
    if args.calib is not None:
        kw["rig"] = str(args.calib)
    if args.motion:
        kw["motions"] = [str(p) for p in args.motion]
    return kw


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from mvpose.data.synthetic import write_dataset

    out = write_dataset(
        args.out,
        args.num_samples,
        split=args.split,
        seed=args.seed,
        image_format=args.format,
        num_workers=args.workers,
        progress=True,
        **_studio_kwargs(args),
    )
    print(f"synthetic dataset ({args.num_samples} samples, split {args.split}) written to {out}")
    return 0


def _cmd_data_show(args: argparse.Namespace) -> int:
    from mvpose.data.synthetic import SyntheticStudio, write_contact_sheet

    dataset = SyntheticStudio(
        num_samples=max(args.num_samples, 1), split=args.split, seed=args.seed, **_studio_kwargs(args)
    )
    out = write_contact_sheet(args.out, dataset, num_samples=args.num_samples)
    print(f"contact sheet of {args.num_samples} samples x {len(dataset.camera_names)} views written to {out}")
    return 0


def _cmd_limb_stats(args: argparse.Namespace) -> int:
    from mvpose.data.limb_stats import limb_stats_from_source, write_limb_stats_h5

    if args.source != "synthetic" and args.path is None:
        raise ValueError(f"--source {args.source} needs --path")
    mean, std, n = limb_stats_from_source(
        args.source, args.path, subjects=tuple(args.subjects), num_motions=args.num_motions, seed=args.seed
    )
    out = write_limb_stats_h5(args.out, mean, std)
    print(f"limb lengths (mm) from {n} poses ({args.source}):")
    for i, (m, s_) in enumerate(zip(mean.tolist(), std.tolist())):
        print(f"  limb {i:2d}: {m:7.1f} +- {s_:5.1f}")
    print(f"written to {out} (ContextPose's mean_and_std_limb_length.h5 layout)")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.what == "models":
        from mvpose.bench.models import format_report, run_benchmark

        report = run_benchmark(out=args.out, repeats=args.repeats, seed=args.seed, paper=not args.no_paper)
        print(format_report(report))
        if args.out:
            print(f"JSON written to {args.out}")
        return 0
    if args.what == "data":
        from mvpose.bench.data import format_report, run_benchmark

        report = run_benchmark(out=args.out, seed=args.seed)
        print(format_report(report))
        if args.out:
            print(f"JSON written to {args.out}")
        return 0
    if args.what == "triangulation":
        from mvpose.bench.triangulation import format_report, run_benchmark

        report = run_benchmark(data_root=args.data, out=args.out, repeats=args.repeats, seed=args.seed)
        print(format_report(report))
        if args.out:
            print(f"JSON written to {args.out}")
        return 0
    if args.what in BENCH_MODULES:  # mvpose.bench.<what>.main(args) -> int
        return importlib.import_module(f"mvpose.bench.{args.what}").main(args)
    raise SystemExit(f"unknown benchmark {args.what!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mvpose", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "triangulate",
        help="triangulate per-camera 2D detections into 3D joints (mm)",
        description="Triangulate 2D detections (OpenPose JSON folders, one per camera, or an NPZ "
        "(V, T, J, 3) of x, y, confidence) with a calibration file. Single person: in every frame "
        "the person consistent across views is chosen (see docs/triangulate.md).",
    )
    p.add_argument("--calib", required=True, type=Path, help="calibration file (any format load_rig reads)")
    p.add_argument(
        "--detections", required=True, type=Path, help="folder of per-camera JSON folders, or .npz"
    )
    p.add_argument("--out", required=True, type=Path, help="output .npz or .json")
    p.add_argument(
        "--skeleton", default=None, help="keypoint set of the detections (default: from the count)"
    )
    p.add_argument("--method", default="robust+refine", choices=("dlt", "robust", "refine", "robust+refine"))
    p.add_argument("--min-confidence", type=float, default=0.3, help="ignore keypoints below this confidence")
    p.add_argument(
        "--threshold-px",
        type=float,
        default=25.0,
        help="outlier threshold (px) of the robust methods (25 suits OpenPose on HD video)",
    )
    p.add_argument("--subject", default=None, help="rig to use when the calibration file holds several")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_triangulate)

    p = sub.add_parser(
        "example", help="write a small synthetic capture (calibration + detections) to try mvpose on"
    )
    p.add_argument("--out", type=Path, default=Path("runs/example"))
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_example)

    data = sub.add_parser("data", help="datasets: synthetic studio, sequences").add_subparsers(
        dest="data_command", required=True
    )

    def studio_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--split", default="train", choices=("train", "val", "all"))
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--image-size", type=int, default=256, help="square crop side, px")
        p.add_argument("--calib", type=Path, default=None, help="calibration file (default: a 4-camera ring)")
        p.add_argument(
            "--motion", nargs="*", default=[], type=Path, help="BVH/AMC files (default: procedural)"
        )

    p = data.add_parser("synth", help="render a synthetic-studio dataset to disk")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--format", default="png", choices=("png", "jpg"))
    p.add_argument("--workers", type=int, default=0)
    studio_options(p)
    p.set_defaults(func=_cmd_data_synth)

    p = data.add_parser("show", help="a PNG contact sheet of synthetic views with the 2D joints overlaid")
    p.add_argument("--out", type=Path, default=Path("runs/contact_sheet.png"))
    p.add_argument("--num-samples", type=int, default=4)
    studio_options(p)
    p.set_defaults(func=_cmd_data_show)

    p = data.add_parser(
        "limb-stats", help="mean/std of ContextPose's 16 limb lengths (mm) from training data, as .h5"
    )
    p.add_argument("--source", default="synthetic", choices=("synthetic", "h36m", "npz"))
    p.add_argument("--path", type=Path, default=None, help="labels .npy (h36m) or data_3d_*.npz (npz)")
    p.add_argument("--subjects", nargs="*", default=["S1", "S5", "S6", "S7", "S8"])
    p.add_argument("--num-motions", type=int, default=32, help="procedural motions (synthetic)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/mean_and_std_limb_length.h5"))
    p.set_defaults(func=_cmd_limb_stats)

    p = data.add_parser(
        "export-sequences",
        help="motions (BVH/AMC or procedural) seen through a rig, as VideoPose3D npz files",
    )
    p.add_argument(
        "--out", required=True, type=Path, help="e.g. runs/seq/synth.npz -> data_3d_synth.npz, ..."
    )
    p.add_argument("--motion", nargs="*", default=[], type=Path, help="BVH or AMC files")
    p.add_argument("--procedural", type=int, default=0, help="number of procedural motions (seeds seed..)")
    p.add_argument("--calib", type=Path, default=None, help="calibration file (default: an 8-camera ring)")
    p.add_argument("--frames", type=int, default=500, help="frames per procedural motion")
    p.add_argument("--subject", default="S1")
    p.add_argument("--sigma-px", type=float, default=0.0, help="Gaussian 2D noise")
    p.add_argument("--outlier-rate", type=float, default=0.0)
    p.add_argument("--swap-rate", type=float, default=0.0, help="left/right swaps")
    p.add_argument("--drop-rate", type=float, default=0.0, help="dropped joints (NaN)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_export_sequences)

    p = sub.add_parser("bench", help="benchmarks: ours against a reference, in one run")
    p.add_argument("what", choices=("triangulation", "data", "models", *BENCH_MODULES))
    p.add_argument("--data", type=Path, default=None, help="shared data folder (default: ../shared/data)")
    p.add_argument("--out", type=Path, default=None, help="write the report as JSON here")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-paper", action="store_true", help="models: skip the slow paper-size forward timing")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_bench)

    for name in COMMAND_MODULES:  # larger subcommands live in mvpose.commands.<name>
        importlib.import_module(f"mvpose.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        # Boundary errors (files, formats, options) are reported plainly, without a traceback.
        if args.verbose:
            raise
        print(f"mvpose {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
