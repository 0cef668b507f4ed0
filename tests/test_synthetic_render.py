"""Synthetic studio renderer: projection of the primitives, visibility rule, determinism, and
agreement of the fast painter's renderer with the per-pixel reference ray caster."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mvpose.calib import look_at
from mvpose.data.synthetic import render as r
from mvpose.geometry import CameraRig
from mvpose.skeleton import H36M17

J = {n: i for i, n in enumerate(H36M17.joint_names)}


def standing_pose(wrist_behind_back: bool = False) -> np.ndarray:
    """A hand-built H36M17 pose (mm, Z up) facing +x, left = +y."""
    P = {
        "pelvis": (0, 0, 950),
        "left_hip": (0, 130, 950),
        "right_hip": (0, -130, 950),
        "left_knee": (20, 135, 520),
        "right_knee": (20, -135, 520),
        "left_ankle": (0, 140, 90),
        "right_ankle": (0, -140, 90),
        "spine": (0, 0, 1180),
        "thorax": (0, 0, 1430),
        "neck_nose": (60, 0, 1540),
        "head": (20, 0, 1650),
        "left_shoulder": (0, 190, 1420),
        "right_shoulder": (0, -190, 1420),
        "left_elbow": (0, 215, 1130),
        "right_elbow": (0, -215, 1130),
        "left_wrist": (20, 225, 880),
        "right_wrist": (20, -225, 880),
    }
    if wrist_behind_back:
        P["left_elbow"] = (-160, 230, 1180)
        P["left_wrist"] = (-200, 40, 1080)
    X = np.zeros((17, 3))
    for n, p in P.items():
        X[J[n]] = p
    return X


def camera(centre, size=256, f=500.0):
    R, t = look_at(centre, (0.0, 0.0, 950.0))
    K = np.array([[f, 0, (size - 1) / 2], [0, f, (size - 1) / 2], [0, 0, 1.0]])
    return K[None], R[None], t[None]


def test_ellipsoid_outline_is_exact():
    X = standing_pose()
    prims = r.body_primitives(X)
    K, R, t = camera((3000.0, 1500.0, 2000.0))
    proj = r.project_primitives(prims, K, R, t, r.Light())
    rig = CameraRig(K=torch.from_numpy(K), R=torch.from_numpy(R), t=torch.from_numpy(t))
    u = np.random.default_rng(0).normal(size=(4000, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    for e in range(prims.num_ellipsoids):
        pts = prims.ell_c[e] + u @ prims.ell_A[e].T
        p = rig.project(torch.from_numpy(pts), distort=False).numpy()[0]
        d = p - proj.ell_c[0, e]
        th = np.radians(proj.ell_angle[0, e])
        x = d[:, 0] * np.cos(th) + d[:, 1] * np.sin(th)
        y = -d[:, 0] * np.sin(th) + d[:, 1] * np.cos(th)
        rho = (x / proj.ell_axes[0, e, 0]) ** 2 + (y / proj.ell_axes[0, e, 1]) ** 2
        assert rho.max() == pytest.approx(1.0, abs=2e-3)  # points on the outline, none outside


def test_self_occlusion_constructed():
    X = standing_pose(wrist_behind_back=True)
    prims = r.body_primitives(X)
    wrist = J["left_wrist"]
    Kf, Rf, tf = camera((4000.0, 0.0, 1100.0))  # in front of the person
    Kb, Rb, tb = camera((-4000.0, 0.0, 1100.0))  # behind
    front = r.joint_visibility(prims, X, Kf, Rf, tf, (256, 256))[0]
    back = r.joint_visibility(prims, X, Kb, Rb, tb, (256, 256))[0]
    assert not front[wrist]  # the trunk hides the wrist behind the back
    assert back[wrist]
    # joints are never hidden by their own limbs: seen from the front, the standing pose is all visible
    assert r.joint_visibility(prims, standing_pose(), Kf, Rf, tf, (256, 256))[0].all()
    # from the side (camera on the person's right), the far (left) knee and ankle hide behind the near leg
    Ks, Rs, ts = camera((0.0, -4000.0, 600.0))
    side = r.joint_visibility(prims, standing_pose(), Ks, Rs, ts, (256, 256))[0]
    assert side[J["right_knee"]] and not side[J["left_knee"]] and not side[J["left_ankle"]]


def test_occluder_and_outside_image():
    X = standing_pose()
    prims = r.body_primitives(X)
    K, R, t = camera((4000.0, 0.0, 1100.0))
    uv = K[0] @ (R[0] @ X[J["right_knee"]] + t[0])
    uv = uv[:2] / uv[2]
    occ = [[r.Occluder("disc", (float(uv[0]), float(uv[1])), (12.0, 12.0))]]
    vis = r.joint_visibility(prims, X, K, R, t, (256, 256), occluders=occ)[0]
    assert not vis[J["right_knee"]] and vis[J["left_knee"]]
    box = [[r.Occluder("box", (float(uv[0]), float(uv[1])), (30.0, 8.0), angle_deg=90.0)]]
    vis = r.joint_visibility(prims, X, K, R, t, (256, 256), occluders=box)[0]
    assert not vis[J["right_knee"]]
    # the occluder is drawn in front of the body
    img = r.render_views(
        prims,
        K,
        R,
        t,
        (256, 256),
        occluders=[[r.Occluder("disc", (100.0, 100.0), (10.0, 10.0), color=(1, 2, 3))]],
    )
    assert tuple(img[0, 100, 100]) == (1, 2, 3)
    # a shifted principal point pushes the head out of the image: not visible
    K2 = K.copy()
    K2[0, 1, 2] += 120.0
    vis = r.joint_visibility(prims, X, K2, R, t, (256, 256))[0]
    uv2 = K2[0] @ (R[0] @ X.T + t[0][:, None])
    v = uv2[1] / uv2[2]
    assert (v >= 255.5).any()
    assert not vis[v >= 255.5].any() and vis[v < 200].all()
    # outside the camera's frame (frame_boxes) is black and not visible
    fb = np.array([[0.0, -0.5, 128.0, 255.5]])
    img = r.render_views(prims, K, R, t, (256, 256), frame_boxes=fb)
    assert (img[0, :, 129:] == 0).all()
    vis = r.joint_visibility(prims, X, K, R, t, (256, 256), frame_boxes=fb)[0]
    u = (K[0] @ (R[0] @ X.T + t[0][:, None]))[0] / (K[0] @ (R[0] @ X.T + t[0][:, None]))[2]
    assert not vis[u >= 128.0].any()


def test_left_right_colours_differ():
    app = r.sample_appearance(np.random.default_rng(3))
    P = {n: i for i, n in enumerate(r.PART_NAMES)}
    for a, b in (
        ("left_upper_arm", "right_upper_arm"),
        ("left_thigh", "right_thigh"),
        ("left_shank", "right_shank"),
    ):
        assert np.abs(app.colors[P[a]] - app.colors[P[b]]).max() > 40


def test_background_bank_deterministic():
    a, b = r.BackgroundBank(seed=1, size=128, per_kind=1), r.BackgroundBank(seed=1, size=128, per_kind=1)
    assert np.array_equal(a.textures, b.textures)
    c = r.BackgroundBank(seed=2, size=128, per_kind=1)
    assert not np.array_equal(a.textures, c.textures)
    x = a.sample(np.random.default_rng(5), 96, 64)
    y = a.sample(np.random.default_rng(5), 96, 64)
    assert x.shape == (64, 96, 3) and x.dtype == np.uint8 and np.array_equal(x, y)


def test_matches_reference_ray_caster():
    from mvpose.bench.data import reference_render

    X = standing_pose(wrist_behind_back=True)
    prims = r.body_primitives(X)
    for centre in ((4000.0, 1000.0, 1800.0), (-2000.0, -3500.0, 1500.0)):
        K, R, t = camera(centre)
        ours = r.render_views(
            prims, K, R, t, (256, 256), backgrounds=np.zeros((1, 256, 256, 3), np.uint8), antialias=False
        )[0]
        _, mask = reference_render(prims, K[0], R[0], t[0], (256, 256), r.Light())
        om = ours.max(-1) > 0
        iou = (om & mask).sum() / (om | mask).sum()
        assert iou > 0.95, iou
