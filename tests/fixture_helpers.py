"""Access to the reference fixtures in ``../shared/fixtures`` (parity tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


def fixture_dir(name: str) -> Path:
    d = FIXTURES / "official" / name
    if not d.is_dir():
        pytest.skip(f"fixture {name} not found at {d}")
    return d


def fixture_config(name: str) -> dict:
    return json.loads((fixture_dir(name) / "config.json").read_text())


def fixture_io(name: str) -> dict[str, np.ndarray]:
    with np.load(fixture_dir(name) / "io.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def materialise_checkpoint(name: str, out_dir: Path) -> Path:
    """Write the fixture's checkpoint (reference layout) into ``out_dir`` with make_checkpoint.py."""
    out = Path(out_dir) / f"{name}.pth"
    subprocess.run(
        [sys.executable, str(FIXTURES / "make_checkpoint.py"), str(fixture_dir(name)), str(out)],
        check=True,
        capture_output=True,
    )
    return out
