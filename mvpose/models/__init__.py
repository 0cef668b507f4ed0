"""Models: the multi-view core (pose-ResNet, algebraic and volumetric triangulation, ContextPose)
and the temporal stage (``mvpose.models.temporal``)."""

from mvpose.models.official import KINDS, from_official

__all__ = ["KINDS", "from_official"]
