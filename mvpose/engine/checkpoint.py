"""Training checkpoints: atomic writes, ``weights_only`` loads, full state for exact resumption.

A checkpoint is a dict of tensors and plain Python values only (so that
``torch.load(weights_only=True)`` reads it): ``model``, ``optimizer``, ``scheduler``, ``scaler``
state dicts, ``step``, ``epoch``, ``rng`` (torch CPU/CUDA, numpy and Python states as tensors and
lists), ``config`` (the resolved config dict), ``git`` and ``format``. It is written to a temporary
file in the same folder, flushed and fsynced, then renamed over the target, so an interrupted
write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mvpose.errors import FileFieldError

__all__ = ["FORMAT", "CheckpointError", "save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state"]

FORMAT = "mvpose-checkpoint/1"


class CheckpointError(FileFieldError):
    file_label = "checkpoint"
    field_label = "entry"


def rng_state() -> dict[str, Any]:
    """Every RNG the training touches, as tensors / lists of ints (``weights_only``-safe)."""
    np_state = np.random.get_state()  # noqa: NPY002 (the legacy global RNG is what users seed)
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus ``format``) to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read an mvpose checkpoint with ``weights_only=True``; clear errors for missing, corrupt or
    foreign files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated / corrupt / not a torch file / unsafe pickle
        raise CheckpointError(path, None, f"cannot be read ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            path,
            "format",
            f"not an mvpose training checkpoint (expected format {FORMAT!r}); "
            "for reference checkpoints use model.official_checkpoint / mvpose.models.from_official",
        )
    for key in ("model", "step", "config"):
        if key not in state:
            raise CheckpointError(path, key, "missing")
    return state
