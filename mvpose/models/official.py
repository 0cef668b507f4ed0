"""``from_official(kind, path, **overrides)``: build a model from a reference implementation's
checkpoint file.

Every loader reads with ``torch.load(weights_only=True)``, accepts the ``module.`` prefix of
DDP-saved files and the reference repository's own checkpoint layout, infers the hyperparameters
it can from the state dict's keys and shapes, takes the rest as ``overrides`` spelled as the
reference spells them, and loads strictly: a mismatch raises an error naming the file and listing
the missing and unexpected keys.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from torch import nn

__all__ = ["KINDS", "from_official"]

#: kind -> (module, loader function)
KINDS: dict[str, tuple[str, str]] = {
    "lt_algebraic": ("mvpose.models.algebraic", "load_official_algebraic"),
    "lt_volumetric": ("mvpose.models.volumetric", "load_official_volumetric"),
    "contextpose": ("mvpose.models.context", "load_official_contextpose"),
    "videopose3d": ("mvpose.models.temporal.videopose3d", "load_official"),
    "poseformerv2": ("mvpose.models.temporal.poseformerv2", "load_official"),
    "pstmo": ("mvpose.models.temporal.pstmo", "load_official"),
    "srnet": ("mvpose.models.temporal.srnet", "load_official"),
    "tgraphnet": ("mvpose.models.temporal.tgraphnet", "load_official"),
}


def from_official(kind: str, path: str | Path, **overrides) -> nn.Module:
    """Load a reference checkpoint.

    Args:
        kind: one of :data:`KINDS` (``lt_algebraic``, ``lt_volumetric``, ``contextpose``,
            ``videopose3d``, ``poseformerv2``, ``pstmo``, ``srnet``, ``tgraphnet``).
        path: the checkpoint file (never downloaded).
        overrides: hyperparameters the state dict cannot reveal, in the reference's names.

    Returns:
        the model, in eval mode, with the checkpoint's weights.
    """
    try:
        module_name, func_name = KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown checkpoint kind {kind!r}; expected one of {sorted(KINDS)}") from None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise NotImplementedError(f"checkpoint kind {kind!r} is not available yet ({exc})") from None
    return getattr(module, func_name)(path, **overrides)
