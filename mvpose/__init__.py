"""mvpose: 3D human pose from calibrated multi-camera rigs.

Units: millimetres for 3D, pixels for 2D (the image each tensor belongs to). Cameras map world
to camera as ``x_cam = R @ X_world + t``.
"""

__version__ = "0.1.0"
