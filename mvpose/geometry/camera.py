"""`CameraRig`: the calibrated cameras of a capture, batched as tensors.

Conventions (see DESIGN.md): world to camera is ``x_cam = R @ X_world + t`` with ``t`` in mm;
``K`` maps normalised image coordinates to pixels of the image the rig describes;
``dist`` holds five coefficients whose meaning is given by ``distortion_model``
(``"opencv"``: ``[k1, k2, p1, p2, k3]``; ``"h36m"``: ``[k1, k2, p0, p1, k3]`` in Human3.6M's
stored order, see :mod:`mvpose.geometry.distortion`).

A rig holds ``V`` cameras, optionally with leading batch dimensions: ``K (*, V, 3, 3)``,
``R (*, V, 3, 3)``, ``t (*, V, 3)``, ``dist (*, V, 5)``. A batched rig (``(B, V, ...)``) carries
one rig per sample, as a data loader produces after cropping each sample's views.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from mvpose.geometry import distortion as _dist

__all__ = ["CameraRig"]


def _as_tensor(x, dtype: torch.dtype, device=None) -> Tensor:
    if isinstance(x, Tensor):
        return x.to(dtype=dtype, device=device if device is not None else x.device)
    return torch.as_tensor(x, dtype=dtype, device=device)


@dataclass(frozen=True, eq=False)
class CameraRig:
    """Calibrated cameras (mm, pixels).

    Args:
        K: intrinsics ``(*, V, 3, 3)`` in pixels.
        R: world-to-camera rotations ``(*, V, 3, 3)``.
        t: world-to-camera translations ``(*, V, 3)`` in mm.
        dist: distortion coefficients ``(*, V, 5)``; ``None`` means no distortion.
        names: one name per camera (length ``V``).
        image_size: ``(V, 2)`` integer ``(width, height)`` in pixels, or ``None`` when unknown.
        distortion_model: ``"opencv"`` or ``"h36m"`` (applies to every camera of the rig).
        meta: free-form per-rig metadata kept by readers (source file, per-camera extras).

    Example:
        >>> rig = CameraRig(K=torch.eye(3).expand(2, 3, 3), R=torch.eye(3).expand(2, 3, 3),
        ...                 t=torch.tensor([[0., 0., 3000.], [100., 0., 3000.]]))
        >>> rig.project(torch.zeros(5, 3)).shape
        torch.Size([2, 5, 2])
    """

    K: Tensor
    R: Tensor
    t: Tensor
    dist: Tensor | None = None
    names: tuple[str, ...] | None = None
    image_size: Tensor | None = None
    distortion_model: str = "opencv"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        dtype = self.K.dtype if isinstance(self.K, Tensor) and self.K.is_floating_point() else torch.float64
        device = self.K.device if isinstance(self.K, Tensor) else None
        K = _as_tensor(self.K, dtype, device)
        R = _as_tensor(self.R, dtype, K.device)
        t = _as_tensor(self.t, dtype, K.device)
        if K.ndim < 3 or K.shape[-2:] != (3, 3):
            raise ValueError(f"CameraRig: K must have shape (*, V, 3, 3), got {tuple(K.shape)}")
        if R.shape != K.shape:
            raise ValueError(f"CameraRig: R must have the shape of K {tuple(K.shape)}, got {tuple(R.shape)}")
        if t.shape != K.shape[:-1]:
            raise ValueError(f"CameraRig: t must have shape {tuple(K.shape[:-1])}, got {tuple(t.shape)}")
        V = K.shape[-3]
        if self.dist is None:
            d = torch.zeros(*K.shape[:-2], 5, dtype=dtype, device=K.device)
        else:
            d = _as_tensor(self.dist, dtype, K.device)
            if d.shape[-1] < 5:  # e.g. anipose/Pose2Sim's four [k1, k2, p1, p2]
                d = torch.cat([d, d.new_zeros(*d.shape[:-1], 5 - d.shape[-1])], dim=-1)
            if d.shape[-1] != 5:
                raise ValueError(f"CameraRig: dist must have 5 coefficients, got {d.shape[-1]}")
            d = d.expand(*K.shape[:-2], 5).clone() if d.shape[:-1] != K.shape[:-2] else d
        if self.distortion_model not in _dist.MODELS:
            raise ValueError(
                f"CameraRig: unknown distortion_model {self.distortion_model!r}; "
                f"expected one of {_dist.MODELS}"
            )
        names = (
            tuple(str(n) for n in self.names)
            if self.names is not None
            else tuple(f"cam{i}" for i in range(V))
        )
        if len(names) != V:
            raise ValueError(f"CameraRig: {len(names)} names for {V} cameras")
        if len(set(names)) != V:
            raise ValueError(f"CameraRig: camera names must be unique, got {names}")
        size = self.image_size
        if size is not None:
            size = torch.as_tensor(size, dtype=torch.int64, device=K.device)
            if size.shape != (V, 2):
                raise ValueError(
                    f"CameraRig: image_size must have shape ({V}, 2) (w, h), got {tuple(size.shape)}"
                )
        for name, value in (("K", K), ("R", R), ("t", t), ("dist", d)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "image_size", size)

    # ------------------------------------------------------------------ structure
    @property
    def num_views(self) -> int:
        return self.K.shape[-3]

    def __len__(self) -> int:
        return self.num_views

    @property
    def batch_shape(self) -> torch.Size:
        """Leading batch dimensions (empty for a plain rig)."""
        return self.K.shape[:-3]

    @property
    def dtype(self) -> torch.dtype:
        return self.K.dtype

    @property
    def device(self) -> torch.device:
        return self.K.device

    def to(self, device=None, dtype: torch.dtype | None = None) -> CameraRig:
        """Move/cast the float tensors (``image_size`` stays integer)."""
        conv = {n: getattr(self, n).to(device=device, dtype=dtype) for n in ("K", "R", "t", "dist")}
        size = self.image_size.to(device) if self.image_size is not None else None
        return replace(self, **conv, image_size=size)

    def index(self, name_or_names: str | Sequence[str]) -> int | list[int]:
        """Index (or indices) of cameras by name; a KeyError lists the known names."""
        if isinstance(name_or_names, str):
            try:
                return self.names.index(name_or_names)
            except ValueError:
                raise KeyError(
                    f"no camera named {name_or_names!r} in rig; cameras are {list(self.names)}"
                ) from None
        return [self.index(n) for n in name_or_names]

    def select(self, views: Sequence[int] | Sequence[str] | Tensor) -> CameraRig:
        """A rig of a subset (or reordering) of the cameras, by index or name."""
        if not isinstance(views, Tensor) and len(views) and isinstance(views[0], str):
            views = self.index(list(views))
        idx = torch.as_tensor(views, dtype=torch.long, device=self.device)
        il = idx.tolist()
        return replace(
            self,
            K=self.K.index_select(-3, idx),
            R=self.R.index_select(-3, idx),
            t=self.t.index_select(-2, idx),
            dist=self.dist.index_select(-2, idx),
            names=tuple(self.names[i] for i in il),
            image_size=self.image_size[idx] if self.image_size is not None else None,
        )

    def expand(self, *batch_shape: int) -> CameraRig:
        """Broadcast a plain rig ``(V, ...)`` to a batched rig ``(*batch_shape, V, ...)``."""
        bs = tuple(batch_shape)
        return replace(
            self,
            K=self.K.expand(*bs, *self.K.shape[-3:]),
            R=self.R.expand(*bs, *self.R.shape[-3:]),
            t=self.t.expand(*bs, *self.t.shape[-2:]),
            dist=self.dist.expand(*bs, *self.dist.shape[-2:]),
        )

    # ------------------------------------------------------------------ geometry
    def projection_matrices(self) -> Tensor:
        """``P = K [R | t]`` ``(*, V, 3, 4)``: world mm to undistorted pixels (homogeneous)."""
        return self.K @ torch.cat([self.R, self.t[..., None]], dim=-1)

    def centers(self) -> Tensor:
        """Camera centres in world coordinates ``(*, V, 3)`` mm: ``C = -R^T t``."""
        return -(self.R.transpose(-1, -2) @ self.t[..., None])[..., 0]

    def world_to_camera(self, points_world: Tensor) -> Tensor:
        """World points ``(*, J, 3)`` mm to each camera's frame ``(*, V, J, 3)`` mm."""
        X = points_world.to(self.dtype).unsqueeze(-3)
        return X @ self.R.transpose(-1, -2) + self.t[..., None, :]

    def camera_to_world(self, points_camera: Tensor) -> Tensor:
        """Camera-frame points ``(*, V, J, 3)`` mm back to world ``(*, V, J, 3)`` mm."""
        return (points_camera.to(self.dtype) - self.t[..., None, :]) @ self.R

    def _pixels(self, xy: Tensor) -> Tensor:
        return xy @ self.K[..., :2, :2].transpose(-1, -2) + self.K[..., None, :2, 2]

    def _normalised(self, uv: Tensor) -> Tensor:
        K = self.K[..., None, :, :]
        fx, s, cx = K[..., 0, 0], K[..., 0, 1], K[..., 0, 2]
        fy, cy = K[..., 1, 1], K[..., 1, 2]
        y = (uv[..., 1] - cy) / fy
        x = (uv[..., 0] - cx - s * y) / fx
        return torch.stack([x, y], -1)

    def project(self, points_world: Tensor, distort: bool = True) -> Tensor:
        """Project world points into every view, with the rig's lens distortion.

        Matches ``cv2.projectPoints`` for the OpenCV model. Points behind a camera get the
        same (meaningless) values OpenCV gives them; use :meth:`world_to_camera` for depths.

        Args:
            points_world: ``(*, J, 3)`` mm; ``*`` broadcasts against the rig's batch shape.
            distort: apply the distortion model (``False``: ideal pinhole).

        Returns:
            pixels ``(*, V, J, 2)``.
        """
        Xc = self.world_to_camera(points_world)
        xy = Xc[..., :2] / Xc[..., 2:3]
        if distort:
            xy = _dist.distort(xy, self.dist[..., None, :], self.distortion_model)
        return self._pixels(xy)

    def project_with_jacobian(self, points_world: Tensor, return_valid: bool = False):
        """Pixels ``(*, V, J, 2)`` and ``d pixels / d X_world`` ``(*, V, J, 2, 3)`` (with distortion).

        With ``return_valid``, also a mask ``(*, V, J)``: True where the point lies in front of
        the camera and inside the domain where the lens model is one-to-one (radius below the
        first fold of the radial polynomial, see :meth:`distortion_max_radius2`, and a positive
        Jacobian determinant). Outside it the distortion polynomial folds back, so a far-off
        point can project onto any pixel: iterative solvers must not step there.
        """
        Xc = self.world_to_camera(points_world)
        z = Xc[..., 2:3]
        xy = Xc[..., :2] / z
        xyd, jd = _dist.distort_with_jacobian(xy, self.dist[..., None, :], self.distortion_model)
        # d xy / d Xc = [I2 | -xy] / z ; d Xc / d X = R
        dxy_dXc = torch.cat([torch.diag_embed(torch.ones_like(xy)), -xy[..., None]], dim=-1) / z[..., None]
        K2 = self.K[..., None, :2, :2]
        jac = K2 @ jd @ dxy_dXc @ self.R[..., None, :, :]
        if not return_valid:
            return self._pixels(xyd), jac
        with torch.no_grad():
            r2 = xy[..., 0] ** 2 + xy[..., 1] ** 2
            det = jd[..., 0, 0] * jd[..., 1, 1] - jd[..., 0, 1] * jd[..., 1, 0]
            valid = (z[..., 0] > 0) & (det > 0) & (r2 < self.distortion_max_radius2()[..., None])
        return self._pixels(xyd), jac, valid

    def distortion_max_radius2(self) -> Tensor:
        """Squared normalised radius ``(*, V)`` up to which the radial distortion
        ``r (1 + k1 r^2 + k2 r^4 + k3 r^6)`` still increases with ``r`` (``inf`` when it always
        does): the domain where the lens model is one-to-one."""
        with torch.no_grad():
            k1, k2, k3 = self.dist[..., 0], self.dist[..., 1], self.dist[..., 4]
            # d/dr = 1 + 3 k1 s + 5 k2 s^2 + 7 k3 s^3 (s = r^2); its smallest positive root is
            # 1 / t for the largest positive real root t of t^3 + 3 k1 t^2 + 5 k2 t + 7 k3.
            C = torch.zeros(*k1.shape, 3, 3, dtype=self.dtype, device=self.device)
            C[..., 0, 0], C[..., 0, 1], C[..., 0, 2] = -3.0 * k1, -5.0 * k2, -7.0 * k3
            C[..., 1, 0] = C[..., 2, 1] = 1.0
            t = torch.linalg.eigvals(C)
            real = (t.imag.abs() <= 1e-9 * t.abs().clamp(min=1.0)) & (t.real > 0)
            t_max = torch.where(real, t.real, torch.zeros_like(t.real)).amax(-1)
            return torch.where(t_max > 0, 1.0 / t_max, torch.full_like(t_max, float("inf")))

    def undistort_points(self, points_px: Tensor, iterations: int = 8) -> Tensor:
        """Remove lens distortion from pixels ``(*, V, J, 2)``; returns pixels of the ideal pinhole
        camera with the same ``K`` (as ``cv2.undistortPoints(..., P=K)``). NaNs stay NaN."""
        if not self.has_distortion:
            return points_px.to(self.dtype)
        xy_d = self._normalised(points_px.to(self.dtype))
        xy = _dist.undistort(xy_d, self.dist[..., None, :], self.distortion_model, iterations)
        return self._pixels(xy)

    def distort_points(self, points_px: Tensor) -> Tensor:
        """Distort ideal pinhole pixels ``(*, V, J, 2)`` (the inverse of :meth:`undistort_points`)."""
        xy = self._normalised(points_px.to(self.dtype))
        return self._pixels(_dist.distort(xy, self.dist[..., None, :], self.distortion_model))

    # ------------------------------------------------------------------ image updates
    def crop(self, boxes_ltrb: Tensor) -> CameraRig:
        """Rig of the cropped images: ``boxes (*, V, 4)`` ``(left, top, right, bottom)`` px in this
        rig's images. Shifts the principal point; ``image_size`` becomes the box size.

        The crop keeps the pixel grid (pixel ``(left, top)`` becomes ``(0, 0)``), as
        learnable-triangulation's ``Camera.update_after_crop`` does.
        """
        boxes = torch.as_tensor(boxes_ltrb, dtype=self.dtype, device=self.device)
        K = self.K.clone()
        K[..., 0, 2] = K[..., 0, 2] - boxes[..., 0]
        K[..., 1, 2] = K[..., 1, 2] - boxes[..., 1]
        size = (boxes[..., 2:] - boxes[..., :2]).round().long()
        same = size.ndim == 2 or bool((size == size.reshape(-1, *size.shape[-2:])[0]).all())
        image_size = size.reshape(-1, *size.shape[-2:])[0] if same else None
        return replace(self, K=K, image_size=image_size)

    def resize(
        self, new_size: tuple[int, int], old_size: tuple[int, int] | Tensor | None = None
    ) -> CameraRig:
        """Rig of the images resized to ``new_size = (w, h)`` px from ``old_size`` (default
        ``image_size``, per camera). Scales ``fx, cx`` by ``w_new / w_old`` and ``fy, cy`` by
        ``h_new / h_old``, the convention of learnable-triangulation's ``update_after_resize``
        (pixel ``i`` maps to ``i * scale``)."""
        if old_size is None:
            if self.image_size is None:
                raise ValueError("CameraRig.resize: image_size is unknown; pass old_size=(w, h)")
            old_size = self.image_size
        old = torch.as_tensor(old_size, dtype=self.dtype, device=self.device)
        new = torch.as_tensor(new_size, dtype=self.dtype, device=self.device)
        scale = new / old  # (2,) or (V, 2)
        rig = self.scale(scale[..., 0], scale[..., 1])
        size = (
            torch.as_tensor(new_size, dtype=torch.int64, device=self.device).expand(self.num_views, 2).clone()
        )
        return replace(rig, image_size=size)

    def scale(self, sx: float | Tensor, sy: float | Tensor | None = None) -> CameraRig:
        """Scale the pixel grid by ``sx`` (and ``sy``, default ``sx``): ``K <- diag(sx, sy, 1) K``.

        ``sx``/``sy`` may be scalars or tensors broadcastable to ``(*, V)``. ``image_size`` is scaled
        and rounded when it is known and the scale is the same for every sample.
        """
        sy = sx if sy is None else sy
        sx = torch.as_tensor(sx, dtype=self.dtype, device=self.device)
        sy = torch.as_tensor(sy, dtype=self.dtype, device=self.device)
        S = torch.zeros(
            *torch.broadcast_shapes(sx.shape, sy.shape), 3, 3, dtype=self.dtype, device=self.device
        )
        S[..., 0, 0], S[..., 1, 1], S[..., 2, 2] = sx, sy, 1.0
        size = None
        if self.image_size is not None and sx.ndim <= 1 and sy.ndim <= 1:
            wh = torch.stack(torch.broadcast_tensors(sx, sy), -1)
            size = (self.image_size.to(self.dtype) * wh).round().long()
        return replace(self, K=S @ self.K, image_size=size)

    def triangulate(self, points_px: Tensor, weights: Tensor | None = None, method: str = "dlt", **kwargs):
        """Triangulate raw (distorted) pixel detections ``(*, V, J, 2)``.

        Undistorts first, then calls :func:`mvpose.geometry.triangulation.triangulate` with
        this rig's projection matrices; ``method="refine"`` minimises the reprojection error on
        the raw pixels through the full camera model (distortion included).

        Returns:
            points ``(*, J, 3)`` mm (NaN where fewer than two usable views), as
            :func:`~mvpose.geometry.triangulation.triangulate`.
        """
        from mvpose.geometry import triangulation as _tri

        undist = self.undistort_points(points_px)
        return _tri.triangulate(
            undist,
            self.projection_matrices(),
            weights,
            method=method,
            rig=self,
            points_2d_raw=points_px,
            **kwargs,
        )

    def reprojection_error(self, points_world: Tensor, points_px: Tensor) -> Tensor:
        """Pixel distance ``(*, V, J)`` between projected ``points_world (*, J, 3)`` and raw
        detections ``points_px (*, V, J, 2)`` (NaN where either is NaN)."""
        return (self.project(points_world) - points_px.to(self.dtype)).norm(dim=-1)

    @property
    def has_distortion(self) -> bool:
        return bool((self.dist != 0).any())

    def __repr__(self) -> str:
        bs = f", batch_shape={tuple(self.batch_shape)}" if len(self.batch_shape) else ""
        return (
            f"CameraRig(views={self.num_views}, names={list(self.names)}, "
            f"distortion_model={self.distortion_model!r}{bs}, dtype={self.dtype})"
        )
