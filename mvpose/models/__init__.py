"""Models: the multi-view core (pose-ResNet, algebraic and volumetric triangulation, ContextPose)
and the temporal stage (``mvpose.models.temporal``)."""
