"""Strict state-dict loading with an error that names the file and lists every mismatch."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

__all__ = ["load_state_dict_strict"]


def load_state_dict_strict(
    model: nn.Module, state_dict: Mapping[str, Tensor], path, description: str
) -> None:
    """``model.load_state_dict(state_dict, strict=True)``, but first compare keys and shapes.

    Raises:
        ValueError: ``"{path}: checkpoint does not fit {description}: missing keys [...]; unexpected
            keys [...]; shape mismatches (checkpoint vs model) [...]"`` (only the non-empty parts).
    """
    own = model.state_dict()
    found = {
        "missing keys": sorted(set(own) - set(state_dict)),
        "unexpected keys": sorted(set(state_dict) - set(own)),
        "shape mismatches (checkpoint vs model)": [
            f"{k}: {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
            for k, v in own.items()
            if k in state_dict and state_dict[k].shape != v.shape
        ],
    }
    problems = [f"{what} {items}" for what, items in found.items() if items]
    if problems:
        raise ValueError(f"{path}: checkpoint does not fit {description}: " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=True)
