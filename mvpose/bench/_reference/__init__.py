"""Plain reimplementations of the temporal models' *reference* forward passes, for benchmarking.

Each module rebuilds one reference network the way its original code computes it (module layout,
parameter names, per-op layers, explicit attention, the reference's DCT or gather algorithm), written
from the papers and the fixture READMEs in ``shared/fixtures/official/<model>/``. They exist to time
mvpose's models against the reference *with the same weights*: ``from_ours(model)`` builds the
reference network for one of our models, maps our state dict onto the reference's names and loads it;
``forward`` takes and returns mvpose's layouts (``(B, T, J, C)`` in, ``(B, T_out, J, 3)`` out) and does
the reference's own layout conversions inside. Eval mode only (dropout is never applied).
"""

from __future__ import annotations

from mvpose.bench._reference import poseformerv2, pstmo, srnet, tgraphnet, videopose3d

__all__ = ["poseformerv2", "pstmo", "srnet", "tgraphnet", "videopose3d", "FROM_OURS"]

#: model name -> ``from_ours(model) -> reference nn.Module``
FROM_OURS = {
    "videopose3d": videopose3d.from_ours,
    "poseformerv2": poseformerv2.from_ours,
    "pstmo": pstmo.from_ours,
    "srnet": srnet.from_ours,
    "tgraphnet": tgraphnet.from_ours,
}
