"""A small synthetic capture written by mvpose itself, to try ``mvpose triangulate`` without data.

``write_example(out)`` writes, deterministically from ``seed``:

* ``calibration.toml``: six cameras on a ring (Pose2Sim/anipose TOML, mild OpenCV distortion,
  Z-up world, translation in metres as that format wants);
* ``pose/camXX_json/camXX.%04d.json``: OpenPose-format 2D detections (17 keypoints per person,
  Human3.6M order) of a person walking a circle, with 1.5 px noise, 3 % missing keypoints, 2 %
  gross outliers and, in two cameras, a bystander listed before or after the subject;
* ``detections.npz``: the subject's detections as ``(V, T, J, 3)`` (NaN where missing);
* ``ground_truth_3d_mm.npy``: the true 3D joints ``(T, 17, 3)`` in mm;
* ``README.txt``: what the files are and how to compare a result with the ground truth.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from mvpose.calib import ring_rig, save_rig
from mvpose.geometry.camera import CameraRig
from mvpose.skeleton import get_skeleton

__all__ = ["write_example", "walking_person", "example_rig"]

FPS = 30.0
NUM_CAMERAS = 6
BYSTANDER_CAMERAS = (0, 1)  # cam_01, cam_02


def example_rig() -> CameraRig:
    """The example's six ring cameras (1920 x 1080 px, f = 1400 px, radius 4.5 m, 2 m high)."""
    return ring_rig(
        num_cameras=NUM_CAMERAS,
        radius_mm=4500.0,
        height_mm=2000.0,
        target_mm=(0.0, 0.0, 900.0),
        focal_px=1400.0,
        dist=(-0.08, 0.03, 0.0005, -0.0003, 0.0),
        start_angle_deg=15.0,
    )


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _pose(root_xy: np.ndarray, forward_xy: np.ndarray, phase: np.ndarray, stride: float, sway: np.ndarray):
    """H36M-17 joints ``(T, 17, 3)`` mm of a body at ``root_xy (T, 2)`` facing ``forward_xy (T, 2)``.

    ``phase (T,)`` is the gait phase (rad), ``stride`` scales the leg/arm swing (0: standing),
    ``sway (T,)`` a small sideways lean (mm)."""
    T = len(phase)
    up = np.broadcast_to([0.0, 0.0, 1.0], (T, 3))
    f = _unit(np.concatenate([forward_xy, np.zeros((T, 1))], -1))
    left = np.cross(up, f)

    def along(angle, length):  # a limb segment swung by `angle` (rad) forward from hanging down
        return length * (np.sin(angle)[:, None] * f - np.cos(angle)[:, None] * up)

    pelvis = np.concatenate([root_xy, np.full((T, 1), 930.0)], -1)
    pelvis[:, 2] += 15.0 * stride * np.cos(2 * phase)
    pelvis += sway[:, None] * left
    swing = np.radians(25.0) * stride
    joints = {"pelvis": pelvis}
    for side, sgn, ph in (("left", 1.0, phase), ("right", -1.0, phase + np.pi)):
        hip = pelvis + sgn * 120.0 * left
        thigh = swing * np.sin(ph)
        knee_flex = np.radians(8.0) + np.radians(30.0) * stride * 0.5 * (1 + np.sin(ph + 0.6 * np.pi))
        knee = hip + along(thigh, 440.0)
        ankle = knee + along(thigh - knee_flex, 430.0)
        joints.update({f"{side}_hip": hip, f"{side}_knee": knee, f"{side}_ankle": ankle})
    thorax = pelvis + 500.0 * up + 30.0 * f
    joints["spine"] = pelvis + 240.0 * up + 15.0 * f
    joints["thorax"] = thorax
    joints["neck_nose"] = thorax + 120.0 * up + 80.0 * f
    joints["head"] = thorax + 260.0 * up + 25.0 * f
    arm = np.radians(20.0) * stride
    for side, sgn, ph in (("left", 1.0, phase + np.pi), ("right", -1.0, phase)):
        shoulder = thorax + sgn * 160.0 * left - 20.0 * up
        upper = arm * np.sin(ph)
        elbow = shoulder + along(upper, 280.0) + sgn * 25.0 * left
        wrist = elbow + along(
            upper + np.radians(15.0) + np.radians(20.0) * stride * 0.5 * (1 + np.sin(ph)), 250.0
        )
        joints.update({f"{side}_shoulder": shoulder, f"{side}_elbow": elbow, f"{side}_wrist": wrist})
    names = get_skeleton("h36m17").joint_names
    return np.stack([joints[n] for n in names], 1)


def walking_person(num_frames: int, radius_mm: float = 1400.0, speed_mm_s: float = 1100.0) -> np.ndarray:
    """The example's subject: H36M-17 joints ``(T, 17, 3)`` mm walking counter-clockwise on a circle."""
    t = np.arange(num_frames) / FPS
    ang = 0.3 + speed_mm_s * t / radius_mm
    root = radius_mm * np.stack([np.cos(ang), np.sin(ang)], -1)
    forward = np.stack([-np.sin(ang), np.cos(ang)], -1)
    phase = 2 * np.pi * 0.9 * t  # 0.9 gait cycles per second
    return _pose(root, forward, phase, 1.0, 10.0 * np.sin(phase))


def _bystander(num_frames: int, rig: CameraRig) -> np.ndarray:
    """A person standing and swaying slowly, between the centre and cameras 1 and 2."""
    t = np.arange(num_frames) / FPS
    centres = rig.centers().numpy()
    mid = 0.5 * (centres[BYSTANDER_CAMERAS[0], :2] + centres[BYSTANDER_CAMERAS[1], :2])
    # Far behind the walking circle as seen from the cameras opposite cameras 1 and 2.
    pos = -0.75 * mid
    root = np.broadcast_to(pos, (num_frames, 2)).copy()
    face = np.broadcast_to(_unit(mid - pos), (num_frames, 2))
    return _pose(root, face, 0.4 * t, 0.0, 30.0 * np.sin(2 * np.pi * 0.2 * t))


def _detect(points_3d: np.ndarray, rig: CameraRig, rng: np.random.Generator) -> np.ndarray:
    """Simulated detector output ``(V, T, J, 3)`` (x, y, confidence); ``(0, 0, 0)`` = not detected."""
    px = rig.project(torch.from_numpy(points_3d)).numpy().transpose(1, 0, 2, 3)  # (V, T, J, 2)
    V, T, J, _ = px.shape
    px = px + rng.normal(0.0, 1.5, px.shape)
    conf = rng.uniform(0.5, 1.0, (V, T, J))
    outlier = rng.random((V, T, J)) < 0.02
    direction = rng.uniform(0, 2 * np.pi, (V, T, J))
    size = rng.uniform(50.0, 150.0, (V, T, J))
    px = px + (outlier * size)[..., None] * np.stack([np.cos(direction), np.sin(direction)], -1)
    missing = rng.random((V, T, J)) < 0.03
    wh = rig.image_size.numpy()[:, None, None, :]
    missing |= ((px < 0) | (px > wh - 1)).any(-1)
    out = np.concatenate([px, conf[..., None]], -1)
    out[missing] = 0.0
    return out


def write_example(out_dir, seed: int = 0, num_frames: int = 120) -> dict[str, Path]:
    """Write the synthetic capture (see the module docstring) to ``out_dir``; returns its paths.

    Example:
        >>> paths = write_example("runs/example")  # doctest: +SKIP
        >>> sorted(paths)  # doctest: +SKIP
        ['calibration', 'detections', 'detections_npz', 'ground_truth', 'readme']
    """
    if int(num_frames) < 1:
        raise ValueError(f"write_example: num_frames must be >= 1, got {num_frames}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rig = example_rig()
    subject = walking_person(int(num_frames))
    bystander = _bystander(int(num_frames), rig)
    det = _detect(subject, rig, rng)  # (V, T, J, 3)
    det_b = _detect(bystander, rig, rng)
    V, T, J, _ = det.shape

    paths = {"calibration": save_rig(rig, out / "calibration.toml")}
    pose = out / "pose"
    bystander_first = rng.random(T) < 0.5
    for v in range(V):
        num = f"{v + 1:02d}"
        cam = pose / f"cam{num}_json"
        cam.mkdir(parents=True, exist_ok=True)
        for old in cam.glob(f"cam{num}.*.json"):  # a previous, longer example
            old.unlink()
        for t in range(T):
            people = [det[v, t]]
            if v in BYSTANDER_CAMERAS and (det_b[v, t, :, 2] > 0).any():
                # cam_01 always lists the bystander first; cam_02 in a random order.
                first = v == BYSTANDER_CAMERAS[0] or bystander_first[t]
                people = [det_b[v, t], det[v, t]] if first else [det[v, t], det_b[v, t]]
            doc = {
                "version": 1.3,
                "people": [
                    {"person_id": [-1], "pose_keypoints_2d": np.round(p, 3).reshape(-1).tolist()}
                    for p in people
                    if (p[:, 2] > 0).any()
                ],
            }
            with open(cam / f"cam{num}.{t:04d}.json", "w", encoding="utf-8") as f:
                json.dump(doc, f)
    paths["detections"] = pose

    subject_det = np.where(det[..., 2:3] > 0, det, np.nan)
    paths["detections_npz"] = out / "detections.npz"
    np.savez_compressed(
        paths["detections_npz"],
        keypoints=subject_det,
        camera_names=np.asarray(rig.names),
        frame_indices=np.arange(T),
        skeleton=np.asarray("h36m17"),
    )
    paths["ground_truth"] = out / "ground_truth_3d_mm.npy"
    np.save(paths["ground_truth"], subject)
    paths["readme"] = out / "README.txt"
    paths["readme"].write_text(
        f"""mvpose example capture (synthetic, seed {seed}, {T} frames at {FPS:g} fps)
==========================================================================
calibration.toml          {V} cameras on a ring, Pose2Sim/anipose TOML (translation in m), Z-up world.
pose/camXX_json/          OpenPose JSON per camera: camXX.NNNN.json, 17 keypoints per person in
                          Human3.6M order (skeleton h36m17), 1.5 px noise, ~3% missing, ~2% outliers
                          of 50-150 px; cam01/cam02 also see a bystander (listed first in cam01).
detections.npz            the subject's detections, keypoints (V, T, 17, 3), NaN where missing.
ground_truth_3d_mm.npy    the true 3D joints (T, 17, 3) in mm.

Triangulate and compare with the ground truth:

  mvpose triangulate --calib {out}/calibration.toml --detections {out}/pose --skeleton h36m17 \\
      --out {out}/points3d.npz
  python -c "import numpy as np; p = np.load('{out}/points3d.npz')['points_3d_mm']; \\
g = np.load('{out}/ground_truth_3d_mm.npy'); \\
print('MPJPE %.1f mm' % np.nanmean(np.linalg.norm(p - g, axis=-1)))"
""",
        encoding="utf-8",
    )
    return paths
