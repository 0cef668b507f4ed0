"""``mvpose bench data``: speed of the synthetic studio's renderer and dataset on one CPU core,
against a naive reference renderer run in the same process on the same scenes.

Ours: :func:`mvpose.data.synthetic.render.render_views` (painter's algorithm with OpenCV
primitives) on the crops of :class:`~mvpose.data.synthetic.SyntheticStudio` samples, background
sampling included; then the whole ``SyntheticStudio.__getitem__`` (pose, cameras, crop, render,
visibility, normalisation).

Reference: :func:`reference_render`, a per-pixel ray caster with a z-buffer in numpy over the same
primitives (each capsule as a dense chain of spheres, each ellipsoid exactly, Lambert shading with
the true surface normal per pixel), restricted to each primitive's screen bounding box so it is
naive but not wasteful. Both render the same scenes with the same backgrounds (no occluders).
The silhouettes of the two are compared (intersection over union, ours without anti-aliasing) to
show that they draw the same body.

Timings run with ``torch.set_num_threads(1)`` and ``cv2.setNumThreads(1)`` (restored afterwards).
"""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from mvpose.data.synthetic import SyntheticStudio
from mvpose.data.synthetic import render as _r

__all__ = ["run_benchmark", "format_report", "reference_render"]


def reference_render(
    prims: _r.Primitives,
    K: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    image_size: tuple[int, int],
    light: _r.Light,
    background: np.ndarray | None = None,
    sphere_spacing: float = 0.25,
) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast one view of the body with a per-pixel z-buffer (the naive reference).

    Args:
        prims: the body; K, R ``(3, 3)``, t ``(3,)``: one pinhole camera of the rendered image.
        image_size: ``(W, H)``.
        background: ``(H, W, 3)`` uint8 (default black).
        sphere_spacing: spacing of the spheres along each capsule, in units of its smaller radius.

    Returns:
        ``(H, W, 3)`` uint8 RGB image and ``(H, W)`` bool body mask.
    """
    W, H = image_size
    K, R, t = (np.asarray(x, dtype=np.float64) for x in (K, R, t))
    img = np.zeros((H, W, 3)) if background is None else background.astype(np.float64)
    zbuf = np.full((H, W), np.inf)
    O = -R.T @ t
    Kinv = np.linalg.inv(K)
    l = np.asarray(light.direction, dtype=np.float64)
    l /= np.linalg.norm(l)
    f = 0.5 * (K[0, 0] + K[1, 1])

    def window(c: np.ndarray, r: float):
        z = R[2] @ c + t[2]
        if z - r <= 1.0:
            return None
        p = K @ (R @ c + t)
        u, v = p[0] / p[2], p[1] / p[2]
        rp = 1.5 * r * f / (z - r) + 2.0
        x0, x1 = max(int(math.floor(u - rp)), 0), min(int(math.ceil(u + rp)) + 1, W)
        y0, y1 = max(int(math.floor(v - rp)), 0), min(int(math.ceil(v + rp)) + 1, H)
        if x0 >= x1 or y0 >= y1:
            return None
        vv, uu = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        d_cam = np.stack([uu, vv, np.ones_like(uu)], -1) @ Kinv.T  # z component 1: s = depth
        return (slice(y0, y1), slice(x0, x1)), d_cam @ R  # world directions (R^T d)

    def shade_into(win, s, hit, normal, colour):
        ys, xs = win
        zb = zbuf[ys, xs]
        upd = hit & (s < zb)
        if not upd.any():
            return
        lam = light.ambient + light.diffuse * np.maximum(normal @ l, 0.0)
        zb[upd] = s[upd]
        img[ys, xs][upd] = np.clip(colour[None] * lam[upd][:, None], 0, 255)

    C = prims.num_capsules
    for c in range(C):
        a, b, ra, rb = prims.cap_a[c], prims.cap_b[c], prims.cap_ra[c], prims.cap_rb[c]
        n = int(np.ceil(np.linalg.norm(b - a) / (sphere_spacing * min(ra, rb)))) + 1
        for s_ in np.linspace(0.0, 1.0, n):
            ctr, rad = a + s_ * (b - a), ra + s_ * (rb - ra)
            w = window(ctr, rad)
            if w is None:
                continue
            win, d = w
            oc = O - ctr
            A = (d * d).sum(-1)
            B = 2.0 * (d @ oc)
            Cc = oc @ oc - rad * rad
            disc = B * B - 4 * A * Cc
            s = (-B - np.sqrt(np.maximum(disc, 0.0))) / (2 * A)
            hit = (disc > 0) & (s > 0)
            X = O + s[..., None] * d
            nrm = (X - ctr) / rad
            shade_into(win, s, hit, nrm, prims.colors[c])
    for e in range(prims.num_ellipsoids):
        ctr, A3 = prims.ell_c[e], prims.ell_A[e]
        w = window(ctr, float(np.linalg.norm(A3, axis=0).max()))
        if w is None:
            continue
        win, d = w
        Ai = np.linalg.inv(A3)
        o2 = Ai @ (O - ctr)
        d2 = d @ Ai.T
        A = (d2 * d2).sum(-1)
        B = 2.0 * (d2 @ o2)
        Cc = o2 @ o2 - 1.0
        disc = B * B - 4 * A * Cc
        s = (-B - np.sqrt(np.maximum(disc, 0.0))) / (2 * A)
        hit = (disc > 0) & (s > 0)
        u = o2 + s[..., None] * d2  # point on the unit sphere
        nrm = u @ Ai  # world normal direction: A^-T u
        nrm /= np.maximum(np.linalg.norm(nrm, axis=-1, keepdims=True), 1e-12)
        shade_into(win, s, hit, nrm, prims.colors[C + e])
    mask = np.isfinite(zbuf)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), mask


def _loop(fn, seconds: float, min_calls: int = 1) -> tuple[int, float]:
    n, t0 = 0, time.perf_counter()
    while True:
        fn(n)
        n += 1
        dt = time.perf_counter() - t0
        if dt >= seconds and n >= min_calls:
            return n, dt


def run_benchmark(
    out=None,
    num_views: int = 4,
    image_size: int = 256,
    seconds: float = 3.0,
    seed: int = 0,
    num_scenes: int = 16,
) -> dict:
    """Time the renderer, ``SyntheticStudio.__getitem__`` and the reference on one core.

    Args:
        out: optional JSON path for the report.
        num_views: cameras of the ring rig.
        image_size: crop side (px).
        seconds: time budget of each timed loop (the reference renders at least one sample).
        seed: dataset seed.
        num_scenes: distinct samples cycled through.

    Returns:
        a dict: ``render_views_per_s``, ``getitem_samples_per_s`` (and ``_views_per_s``),
        ``reference_views_per_s``, ``speedup_vs_reference``, ``silhouette_iou_mean/min``, setup.
    """
    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        ds = SyntheticStudio(
            num_samples=10 * num_scenes + 10_000,
            rig=int(num_views),
            image_size=int(image_size),
            seed=seed,
            num_motions=num_scenes,
        )
        size = ds.image_size
        bank = _r.default_bank(ds.background_seed)
        scenes = [ds.scene(i) for i in range(num_scenes)]
        for k in range(len(ds.motion_ids)):  # warm the per-process motion cache
            ds._motion(k)
        rng = np.random.default_rng(seed)
        V = len(ds.camera_names)

        def ours(n):
            sc = scenes[n % num_scenes]
            bgs = np.stack([bank.sample(rng, *size) for _ in range(V)])
            _r.render_views(
                sc.prims, sc.crop_rig.K.numpy(), sc.R, sc.t, size, sc.light, bgs, None, sc.frame_boxes
            )

        ours(0)
        n_ours, t_ours = _loop(ours, seconds)

        def getitem(n):
            ds[num_scenes + n]

        getitem(0)
        n_get, t_get = _loop(getitem, seconds)

        ious, ref_masks = [], []

        def reference(n):
            sc = scenes[n % num_scenes]
            Kc = sc.crop_rig.K.numpy()
            for v in range(V):
                bg = bank.sample(rng, *size)
                _, mask = reference_render(sc.prims, Kc[v], sc.R[v], sc.t[v], size, sc.light, bg)
                if n < num_scenes:
                    ref_masks.append((n, v, mask))

        n_ref, t_ref = _loop(reference, seconds)
        for n, v, mask in ref_masks:
            sc = scenes[n]
            img = _r.render_views(
                sc.prims,
                sc.crop_rig.K.numpy()[v : v + 1],
                sc.R[v : v + 1],
                sc.t[v : v + 1],
                size,
                sc.light,
                np.zeros((1, size[1], size[0], 3), np.uint8),
                antialias=False,
            )[0]
            ours_mask = img.max(-1) > 0
            ious.append((ours_mask & mask).sum() / max((ours_mask | mask).sum(), 1))
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)

    ours_vps = n_ours * V / t_ours
    ref_vps = n_ref * V / t_ref
    report = {
        "image_size": list(size),
        "num_views": V,
        "threads": 1,
        "scenes": num_scenes,
        "render_views_per_s": ours_vps,
        "render_ms_per_view": 1000.0 / ours_vps,
        "getitem_samples_per_s": n_get / t_get,
        "getitem_views_per_s": n_get * V / t_get,
        "reference_views_per_s": ref_vps,
        "reference_ms_per_view": 1000.0 / ref_vps,
        "speedup_vs_reference": ours_vps / ref_vps,
        "silhouette_iou_mean": float(np.mean(ious)) if ious else float("nan"),
        "silhouette_iou_min": float(np.min(ious)) if ious else float("nan"),
        "silhouette_views_compared": len(ious),
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
    }
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    return report


def format_report(report: dict) -> str:
    """A few readable lines of :func:`run_benchmark`'s dict."""
    w, h = report["image_size"]
    return "\n".join(
        [
            f"synthetic studio, {report['num_views']} views of {w}x{h}, one core "
            f"(torch/cv2 threads = 1), {report['scenes']} scenes",
            f"  renderer (ours)       {report['render_views_per_s']:9.1f} views/s  "
            f"({report['render_ms_per_view']:.2f} ms/view)",
            f"  SyntheticStudio[i]    {report['getitem_samples_per_s']:9.1f} samples/s "
            f"({report['getitem_views_per_s']:.1f} views/s, everything included)",
            f"  reference ray caster  {report['reference_views_per_s']:9.2f} views/s  "
            f"({report['reference_ms_per_view']:.1f} ms/view)",
            f"  speed-up              {report['speedup_vs_reference']:9.1f} x",
            f"  silhouette IoU ours vs reference: mean {report['silhouette_iou_mean']:.3f}, "
            f"min {report['silhouette_iou_min']:.3f} ({report['silhouette_views_compared']} views)",
        ]
    )
