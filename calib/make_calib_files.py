"""Regenerate the files of this folder (see README.md).

    python calib/make_calib_files.py [--h36m-h5 ../shared/data/h36m_cameras/cameras.h5]

* ``example_studio.toml``: ``mvpose.calib.ring_rig()`` with its defaults (no randomness).
* ``h36m_cameras.json``: the 7 Human3.6M subjects read from 3d-pose-baseline's ``cameras.h5``
  with mvpose's reader, written in the mvpose-rig/1 layout with Human3.6M's own distortion model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mvpose.calib import load_rig, ring_rig, save_rig

HERE = Path(__file__).resolve().parent
SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--h36m-h5", type=Path, default=HERE.parent.parent / "shared/data/h36m_cameras/cameras.h5"
    )
    args = ap.parse_args()
    save_rig(ring_rig(), HERE / "example_studio.toml")
    print("wrote", HERE / "example_studio.toml")
    if args.h36m_h5.exists():
        rigs = {s: load_rig(args.h36m_h5, subject=s) for s in SUBJECTS}
        for r in rigs.values():
            r.meta.pop("file", None)
        source = (
            "Human3.6M camera parameters (Ionescu et al., TPAMI 2014; research use only, see "
            "calib/README.md), read from 3d-pose-baseline's cameras.h5 layout by mvpose.calib "
            "(R stored camera-to-world there)"
        )
        save_rig(rigs, HERE / "h36m_cameras.json", source=source)
        print("wrote", HERE / "h36m_cameras.json")
    else:
        print(f"skipped h36m_cameras.json: {args.h36m_h5} not found")


if __name__ == "__main__":
    main()
