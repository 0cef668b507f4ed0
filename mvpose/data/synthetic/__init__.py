"""The synthetic capture studio: a fast renderer of a stylised body (:mod:`.render`), the
:class:`SyntheticStudio` dataset and its on-disk form (:mod:`.dataset`), contact sheets
(:mod:`.contact_sheet`). See docs/synthetic.md."""

from mvpose.data.synthetic.contact_sheet import write_contact_sheet
from mvpose.data.synthetic.dataset import (
    RigJitter,
    SyntheticStudio,
    SyntheticStudioFolder,
    procedural_motion_seed,
    write_dataset,
)

__all__ = [
    "SyntheticStudio",
    "SyntheticStudioFolder",
    "RigJitter",
    "write_dataset",
    "procedural_motion_seed",
    "write_contact_sheet",
]
