"""Fast rasteriser of a stylised human body for the synthetic capture studio.

The body is built from the 17 Human3.6M joints (:data:`mvpose.skeleton.H36M17` order, world
millimetres, Z up) as a set of volumetric primitives (:func:`body_primitives`):

* **capsules**, tapered (radius ``ra`` at ``a``, ``rb`` at ``b``): thighs, shanks, feet, upper arms,
  forearms, hands, neck and a bar across the shoulders;
* **ellipsoids** ``{c + A u : |u| = 1}`` (``A`` holds the three semi-axis vectors as columns):
  head, hair (a cap on the back of the head, so front and back views differ), chest, abdomen
  and pelvis.

Colours depend on the body part, and left and right differ: left arm green, right arm orange, left
leg blue, right leg red (each with its own shade per segment), skin on head, neck and hands, a
random low-saturation shirt and trousers (see :func:`sample_appearance`).

Rendering (:func:`render_views`) is a painter's algorithm with OpenCV primitives, one view at a
time, straight into the output image (a crop is rendered with the crop camera; nothing is
rendered at full resolution and cut out):

1. every primitive is projected through the pinhole camera ``K [R | t]``: a capsule to two discs of
   radius ``r f / z`` joined by their tangent quadrilateral, an ellipsoid to the exact ellipse of
   its outline (the dual quadric ``P Q* P^T``);
2. primitives are sorted back to front by the camera depth of their centre and drawn with
   ``cv2.circle`` / ``cv2.fillConvexPoly`` / ``cv2.ellipse`` (anti-aliased, 1/16 px sub-pixel
   precision), each in three layers: a darker rim, the shaded body colour and a lighter highlight
   shifted towards the light;
3. the shade is Lambert's cosine for one normal per primitive: the surface normal that faces the
   camera (for a capsule, perpendicular to its axis), ``ambient + diffuse * max(0, n . l)``;
4. 2D occluders (boxes and discs, :class:`Occluder`) are drawn last: they stand in front of the
   whole body.

The background is a random crop of a pre-generated bank of textures (value noise, checkerboards,
gradients, blobs: :class:`BackgroundBank`), deterministic given its seed.

Visibility rule (:func:`joint_visibility`): joint ``j`` is visible in a view when

* it lies in front of the camera and inside the image (``-0.5 <= u < W - 0.5``, same for ``v``),
  and, when ``frame_boxes`` is given, inside the camera's full frame;
* no occluder covers its pixel;
* the segment from the camera centre to the joint does not enter a body primitive that the joint
  is not *attached to* (a capsule attached to its two end joints, the trunk volumes to the trunk
  joints, the head to ``head`` and ``neck_nose``: see :func:`body_primitives`) more than 10 mm in
  front of the joint. Capsules are tested as chains of spheres (spacing below 0.6 of the smaller
  radius), ellipsoids exactly. A joint is therefore hidden by the other body parts (the far
  elbow behind the chest, the far knee behind the near leg), never by its own limb.

Lens distortion: the renderer uses an ideal pinhole camera. The synthetic studio renders its crops
with the pinhole crop camera and reports ``dist = 0`` for them; the rig's distortion only
concerns full-frame 2D coordinates (``rig.project``), which the crops never use.
"""

from __future__ import annotations

import colorsys
import functools
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from mvpose.skeleton import H36M17

__all__ = [
    "Primitives",
    "Appearance",
    "Light",
    "Occluder",
    "BackgroundBank",
    "PART_NAMES",
    "body_primitives",
    "sample_appearance",
    "sample_light",
    "sample_occluders",
    "project_primitives",
    "silhouette_boxes",
    "render_views",
    "render_view",
    "joint_visibility",
    "default_bank",
]

_J = {n: i for i, n in enumerate(H36M17.joint_names)}

# ---------------------------------------------------------------------------------------------------
# Body model
# ---------------------------------------------------------------------------------------------------

#: body parts, in the order of :attr:`Appearance.colors`.
PART_NAMES: tuple[str, ...] = (
    "head",
    "hair",
    "neck",
    "chest",
    "abdomen",
    "pelvis",
    "shoulders",
    "left_upper_arm",
    "left_forearm",
    "left_hand",
    "right_upper_arm",
    "right_forearm",
    "right_hand",
    "left_thigh",
    "left_shank",
    "left_foot",
    "right_thigh",
    "right_shank",
    "right_foot",
)
_P = {n: i for i, n in enumerate(PART_NAMES)}

# Base hue (degrees) of the lateral parts: left and right never share a hue family.
_LIMB_HUES = {
    "left_upper_arm": 115.0,  # green
    "left_forearm": 150.0,  # teal green
    "right_upper_arm": 28.0,  # orange
    "right_forearm": 50.0,  # amber
    "left_thigh": 222.0,  # blue
    "left_shank": 195.0,  # sky blue
    "left_foot": 240.0,
    "right_thigh": 358.0,  # red
    "right_shank": 330.0,  # magenta-red
    "right_foot": 345.0,
}
_SKIN = np.array(
    [[250, 215, 180], [235, 190, 150], [215, 160, 120], [185, 130, 90], [140, 95, 60], [100, 65, 45]],
    dtype=np.float64,
)
_HAIR = np.array([[30, 25, 20], [70, 45, 25], [120, 85, 50], [200, 170, 110], [90, 90, 90]], dtype=np.float64)


@dataclass(frozen=True)
class Appearance:
    """Colours of one person: ``colors (len(PART_NAMES), 3)`` RGB in ``[0, 255]`` (float64)."""

    colors: np.ndarray = field(repr=False)


def _hsv(h_deg: float, s: float, v: float) -> np.ndarray:
    return 255.0 * np.array(colorsys.hsv_to_rgb((h_deg % 360.0) / 360.0, min(max(s, 0.0), 1.0), v))


def sample_appearance(rng: np.random.Generator, hue_jitter_deg: float = 10.0) -> Appearance:
    """Random colours: limbs keep their side's hue family (``+-hue_jitter_deg``), with random
    saturation and value; skin, hair, shirt and trousers are drawn freely (shirt and trousers
    with low saturation so the limbs stay the most colourful parts)."""
    cols = np.zeros((len(PART_NAMES), 3))
    skin = _SKIN[rng.integers(len(_SKIN))] * rng.uniform(0.9, 1.05)
    cols[_P["head"]] = cols[_P["neck"]] = skin
    cols[_P["left_hand"]] = cols[_P["right_hand"]] = skin * 0.96
    cols[_P["hair"]] = _HAIR[rng.integers(len(_HAIR))] * rng.uniform(0.8, 1.2)
    shirt = _hsv(rng.uniform(0, 360), rng.uniform(0.05, 0.3), rng.uniform(0.45, 0.95))
    trousers = _hsv(rng.uniform(0, 360), rng.uniform(0.05, 0.3), rng.uniform(0.25, 0.6))
    cols[_P["chest"]] = cols[_P["shoulders"]] = shirt
    cols[_P["abdomen"]] = shirt * 0.93
    cols[_P["pelvis"]] = trousers
    for part, hue in _LIMB_HUES.items():
        v = rng.uniform(0.55, 0.95) * (0.75 if part.endswith("foot") else 1.0)
        cols[_P[part]] = _hsv(hue + rng.uniform(-hue_jitter_deg, hue_jitter_deg), rng.uniform(0.55, 0.9), v)
    return Appearance(np.clip(cols, 0.0, 255.0))


@dataclass(frozen=True)
class Primitives:
    """The body as capsules and ellipsoids (world mm).

    Attributes:
        cap_a, cap_b: ``(C, 3)`` capsule end points.
        cap_ra, cap_rb: ``(C,)`` radii at ``a`` and ``b``.
        cap_part: ``(C,)`` index into :data:`PART_NAMES`.
        ell_c: ``(E, 3)`` ellipsoid centres.
        ell_A: ``(E, 3, 3)`` semi-axis vectors as columns (``X = c + A u``, ``|u| = 1``).
        ell_part: ``(E,)`` index into :data:`PART_NAMES`.
        attached: ``(C + E, 17)`` bool: the H36M17 joints each primitive belongs to (capsules first);
            a primitive never hides a joint it is attached to (see the module docstring).
        colors: ``(C + E, 3)`` RGB base colours.
    """

    cap_a: np.ndarray
    cap_b: np.ndarray
    cap_ra: np.ndarray
    cap_rb: np.ndarray
    cap_part: np.ndarray
    ell_c: np.ndarray
    ell_A: np.ndarray
    ell_part: np.ndarray
    attached: np.ndarray
    colors: np.ndarray

    @property
    def num_capsules(self) -> int:
        return len(self.cap_a)

    @property
    def num_ellipsoids(self) -> int:
        return len(self.ell_c)


def _unit(v: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 1e-6 else fallback


# (part, joint a, joint b, radius a, radius b) in fractions of the stature
_CAPSULES = (
    ("left_thigh", "left_hip", "left_knee", 0.050, 0.033),
    ("right_thigh", "right_hip", "right_knee", 0.050, 0.033),
    ("left_shank", "left_knee", "left_ankle", 0.032, 0.021),
    ("right_shank", "right_knee", "right_ankle", 0.032, 0.021),
    ("left_upper_arm", "left_shoulder", "left_elbow", 0.029, 0.022),
    ("right_upper_arm", "right_shoulder", "right_elbow", 0.029, 0.022),
    ("left_forearm", "left_elbow", "left_wrist", 0.021, 0.016),
    ("right_forearm", "right_elbow", "right_wrist", 0.021, 0.016),
    ("shoulders", "left_shoulder", "right_shoulder", 0.033, 0.033),
    ("neck", "thorax", "neck_nose", 0.030, 0.027),  # b is moved back to the neck (see below)
)


def body_primitives(joints: np.ndarray, appearance: Appearance | None = None) -> Primitives:
    """Capsules and ellipsoids of a body posed at ``joints``.

    Args:
        joints: ``(17, 3)`` H36M17 joints (VideoPose3D order), world mm, Z up.
        appearance: colours (default: a fixed grey-free palette, :func:`sample_appearance` seed 0).

    Sizes scale with the stature, estimated from the legs (thigh + shank = 0.491 of it), clipped
    to ``[1300, 2100]`` mm.
    """
    X = np.asarray(joints, dtype=np.float64)
    if X.shape != (17, 3):
        raise ValueError(f"body_primitives: expected (17, 3) H36M17 joints, got {X.shape}")
    if appearance is None:
        appearance = sample_appearance(np.random.default_rng(0))
    g = lambda n: X[_J[n]]  # noqa: E731
    legs = 0.5 * sum(
        np.linalg.norm(g(f"{s}_hip") - g(f"{s}_knee")) + np.linalg.norm(g(f"{s}_knee") - g(f"{s}_ankle"))
        for s in ("left", "right")
    )
    H = float(np.clip(legs / 0.491, 1300.0, 2100.0))
    z = np.array([0.0, 0.0, 1.0])
    up = _unit(g("thorax") - g("pelvis"), z)
    left = g("left_hip") - g("right_hip") + 0.5 * (g("left_shoulder") - g("right_shoulder"))
    left = _unit(left - up * (left @ up), np.array([0.0, 1.0, 0.0]))
    fwd = np.cross(left, up)

    caps_a, caps_b, ra, rb, parts, att = [], [], [], [], [], []

    def cap(part, a, b, r_a, r_b, joints_attached):
        caps_a.append(a)
        caps_b.append(b)
        ra.append(r_a * H)
        rb.append(r_b * H)
        parts.append(_P[part])
        m = np.zeros(17, dtype=bool)
        m[[_J[n] for n in joints_attached]] = True
        att.append(m)

    for part, ja, jb, r_a, r_b in _CAPSULES:
        a, b = g(ja), g(jb)
        if part == "neck":  # from the thorax up to the base of the skull, behind the nose
            b = a + 0.7 * (b - a) - 0.035 * H * fwd
        cap(part, a, b, r_a, r_b, (ja, jb) + (("thorax",) if part == "shoulders" else ()))
    for s in ("left", "right"):
        ankle, knee = g(f"{s}_ankle"), g(f"{s}_knee")
        # the foot points forward, like the knee, rotated into the floor plane
        shin = _unit(knee - ankle, z)
        foot_dir = fwd - shin * (fwd @ shin)
        foot_dir = _unit(foot_dir, fwd)
        toe = ankle + 0.11 * H * foot_dir - 0.028 * H * shin
        cap(f"{s}_foot", ankle - 0.02 * H * foot_dir, toe, 0.024, 0.018, (f"{s}_ankle",))
        wrist, elbow = g(f"{s}_wrist"), g(f"{s}_elbow")
        hand = wrist + 0.075 * H * _unit(wrist - elbow, -z)
        cap(f"{s}_hand", wrist, hand, 0.018, 0.014, (f"{s}_wrist",))

    ell_c, ell_A, eparts = [], [], []

    def ell(part, c, axes, joints_attached):
        ell_c.append(c)
        ell_A.append(np.stack(axes, axis=1))
        eparts.append(_P[part])
        m = np.zeros(17, dtype=bool)
        m[[_J[n] for n in joints_attached]] = True
        att.append(m)

    # head: between the nose-level joint and the crown joint, its own up axis
    hn, hd = g("neck_nose"), g("head")
    hup = _unit(hd - hn + 0.5 * (hn - g("thorax")), up)
    hleft = _unit(left - hup * (left @ hup), left)
    hfwd = np.cross(hleft, hup)
    hc = 0.5 * (hn + hd) - 0.022 * H * hfwd + 0.005 * H * hup
    ell("head", hc, (0.055 * H * hfwd, 0.047 * H * hleft, 0.066 * H * hup), ("head", "neck_nose"))
    ell(
        "hair",
        hc - 0.02 * H * hfwd + 0.012 * H * hup,
        (0.046 * H * hfwd, 0.05 * H * hleft, 0.06 * H * hup),
        ("head", "neck_nose"),
    )
    # trunk: chest (shoulder width), abdomen and pelvis (hip width)
    pel, spi, tho = g("pelvis"), g("spine"), g("thorax")
    sw = np.linalg.norm(g("left_shoulder") - g("right_shoulder"))
    hw = np.linalg.norm(g("left_hip") - g("right_hip"))
    cup = _unit(tho - spi, up)
    cleft = _unit(left - cup * (left @ cup), left)
    cfwd = np.cross(cleft, cup)
    lc = np.linalg.norm(tho - spi)
    ell(
        "chest",
        spi + 0.5 * (tho - spi),
        (0.062 * H * cfwd, 0.42 * sw * cleft, (0.7 * lc + 0.015 * H) * cup),
        ("spine", "thorax", "left_shoulder", "right_shoulder"),
    )
    aup = _unit(spi - pel, up)
    aleft = _unit(left - aup * (left @ aup), left)
    afwd = np.cross(aleft, aup)
    la = np.linalg.norm(spi - pel)
    ell(
        "abdomen",
        pel + 0.6 * (spi - pel),
        (0.056 * H * afwd, 0.08 * H * aleft, 0.8 * la * aup),
        ("spine", "pelvis"),
    )
    ell(
        "pelvis",
        pel - 0.012 * H * aup,
        (0.062 * H * afwd, (0.5 * hw + 0.045 * H) * aleft, 0.06 * H * aup),
        ("pelvis", "spine", "left_hip", "right_hip"),
    )

    cp = np.array(parts, dtype=np.int64)
    ep = np.array(eparts, dtype=np.int64)
    return Primitives(
        cap_a=np.array(caps_a),
        cap_b=np.array(caps_b),
        cap_ra=np.array(ra),
        cap_rb=np.array(rb),
        cap_part=cp,
        ell_c=np.array(ell_c),
        ell_A=np.array(ell_A),
        ell_part=ep,
        attached=np.array(att),
        colors=appearance.colors[np.concatenate([cp, ep])],
    )


# ---------------------------------------------------------------------------------------------------
# Light, occluders, backgrounds
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Light:
    """A directional light: ``direction`` (3,) world unit vector pointing towards the light,
    ``ambient`` and ``diffuse`` intensities (a fully lit surface gets ``ambient + diffuse``)."""

    direction: tuple[float, float, float] = (0.4, -0.3, 0.866)
    ambient: float = 0.5
    diffuse: float = 0.6


def sample_light(rng: np.random.Generator) -> Light:
    """Random light from the upper hemisphere (elevation 15-80 deg), ambient 0.35-0.65,
    diffuse 0.35-0.75."""
    az, el = rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(15, 80))
    d = (math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el))
    return Light(d, float(rng.uniform(0.35, 0.65)), float(rng.uniform(0.35, 0.75)))


@dataclass(frozen=True)
class Occluder:
    """A 2D occluder in front of the body, in pixels of the rendered image.

    ``kind`` is ``"box"`` (a rectangle of half sizes ``size = (hw, hh)`` rotated by ``angle_deg``)
    or ``"disc"`` (radius ``size[0]``); ``center (u, v)``; ``color`` RGB.
    """

    kind: str
    center: tuple[float, float]
    size: tuple[float, float]
    angle_deg: float = 0.0
    color: tuple[int, int, int] = (128, 128, 128)

    def contains(self, uv: np.ndarray) -> np.ndarray:
        """Boolean mask ``(*,)`` of the pixels ``uv (*, 2)`` inside the occluder."""
        d = np.asarray(uv, dtype=np.float64) - np.asarray(self.center)
        if self.kind == "disc":
            return (d**2).sum(-1) < self.size[0] ** 2
        a = math.radians(self.angle_deg)
        c, s = math.cos(a), math.sin(a)
        x = d[..., 0] * c + d[..., 1] * s
        y = -d[..., 0] * s + d[..., 1] * c
        return (np.abs(x) < self.size[0]) & (np.abs(y) < self.size[1])

    def corners(self) -> np.ndarray:
        a = math.radians(self.angle_deg)
        c, s = math.cos(a), math.sin(a)
        hw, hh = self.size
        local = np.array([[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]])
        return local @ np.array([[c, s], [-s, c]]) + np.asarray(self.center)


def sample_occluders(
    rng: np.random.Generator,
    boxes: np.ndarray,
    prob: float = 0.3,
    max_count: int = 2,
    size_range: tuple[float, float] = (0.12, 0.3),
) -> list[list[Occluder]]:
    """Random occluders per view: with probability ``prob`` a view gets 1 to ``max_count`` boxes or
    discs centred inside the person's box ``boxes (V, 4)`` (ltrb, px of the rendered image), of size
    ``size_range`` times the box side."""
    out = []
    for l, t, r, b in np.asarray(boxes, dtype=np.float64):
        occ = []
        if rng.random() < prob:
            side = max(r - l, b - t)
            for _ in range(int(rng.integers(1, max_count + 1))):
                c = (float(rng.uniform(l, r)), float(rng.uniform(t, b)))
                col = tuple(int(x) for x in rng.integers(20, 236, size=3))
                if rng.random() < 0.5:
                    hw, hh = rng.uniform(*size_range, size=2) * side / 2 * np.array([1.0, 1.6])
                    occ.append(Occluder("box", c, (float(hw), float(hh)), float(rng.uniform(-40, 40)), col))
                else:
                    rad = float(rng.uniform(*size_range) * side / 2)
                    occ.append(Occluder("disc", c, (rad, rad), 0.0, col))
        out.append(occ)
    return out


def _value_noise(rng: np.random.Generator, n: int, octaves=(4, 8, 16, 32, 64)) -> np.ndarray:
    acc = np.zeros((n, n), np.float32)
    amp, tot = 1.0, 0.0
    for o in octaves:
        g = rng.random((o + 1, o + 1)).astype(np.float32)
        acc += amp * cv2.resize(g, (n, n), interpolation=cv2.INTER_CUBIC)
        tot += amp
        amp *= 0.6
    acc /= tot
    return (acc - acc.min()) / max(float(acc.max() - acc.min()), 1e-6)


def _rand_col(rng) -> np.ndarray:
    return _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.8), rng.uniform(0.15, 1.0))


def _texture(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    if kind == "noise":
        m = _value_noise(rng, n)[..., None]
        c0, c1 = _rand_col(rng), _rand_col(rng)
        img = c0 * (1 - m) + c1 * m
        img += 40.0 * (_value_noise(rng, n, (64, 128))[..., None] - 0.5)
    elif kind == "checker":
        cell = int(rng.integers(12, 64))
        yy, xx = np.mgrid[0:n, 0:n]
        a = math.radians(rng.uniform(-30, 30))
        u = (xx * math.cos(a) + yy * math.sin(a)) // cell
        v = (-xx * math.sin(a) + yy * math.cos(a)) // cell
        m = ((u + v) % 2).astype(np.float64)[..., None]
        img = _rand_col(rng) * (1 - m) + _rand_col(rng) * m
        img *= 0.85 + 0.3 * _value_noise(rng, n, (8, 16))[..., None]
    elif kind == "gradient":
        yy, xx = np.mgrid[0:n, 0:n] / n
        a = rng.uniform(0, 2 * math.pi)
        s = np.clip(xx * math.cos(a) + yy * math.sin(a), -2, 2)
        s = (s - s.min()) / max(s.max() - s.min(), 1e-6)
        cx, cy = rng.uniform(0, 1, 2)
        rad = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        m = (0.65 * s + 0.35 * rad / rad.max())[..., None]
        img = _rand_col(rng) * (1 - m) + _rand_col(rng) * m
        img += 12.0 * (_value_noise(rng, n, (32, 64))[..., None] - 0.5)
    elif kind == "blobs":
        img = np.empty((n, n, 3))
        img[:] = _rand_col(rng)
        img8 = img.astype(np.uint8)
        for _ in range(int(rng.integers(25, 70))):
            col = tuple(int(x) for x in _rand_col(rng))
            c = tuple(int(x) for x in rng.integers(0, n, 2))
            r = int(rng.integers(6, n // 6))
            k = rng.integers(3)
            if k == 0:
                cv2.circle(img8, c, r, col, -1, cv2.LINE_AA)
            elif k == 1:
                ax = (r, int(rng.integers(4, r + 5)))
                cv2.ellipse(img8, c, ax, float(rng.uniform(0, 180)), 0, 360, col, -1, cv2.LINE_AA)
            else:
                d = tuple(int(x) for x in rng.integers(-r, r + 1, 2))
                cv2.rectangle(img8, c, (c[0] + d[0], c[1] + d[1]), col, -1)
        img = cv2.GaussianBlur(img8, (0, 0), 1.2).astype(np.float64)
    else:
        raise ValueError(f"unknown background kind {kind!r}")
    return np.clip(img, 0, 255).astype(np.uint8)


class BackgroundBank:
    """Pre-generated background textures (``per_kind`` of each of ``kinds``, ``size x size`` RGB),
    deterministic given ``seed``; :meth:`sample` crops one at random."""

    KINDS = ("noise", "checker", "gradient", "blobs")

    def __init__(self, seed: int = 0, size: int = 512, per_kind: int = 6, kinds=KINDS):
        rng = np.random.default_rng([int(seed), 0xB6])
        self.size = int(size)
        self.kinds = tuple(kinds)
        self.textures = np.stack([_texture(rng, k, self.size) for k in self.kinds for _ in range(per_kind)])
        self.texture_kind = tuple(k for k in self.kinds for _ in range(per_kind))

    def __len__(self) -> int:
        return len(self.textures)

    def sample(self, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
        """A random ``(height, width, 3)`` uint8 background: a random texture, crop, flip and gain."""
        tex = self.textures[int(rng.integers(len(self.textures)))]
        n = self.size
        if width > n or height > n:  # larger than the bank: zoom a random crop
            s = min(n, max(width, height) // 2)
            y0, x0 = rng.integers(0, n - s + 1, 2)
            return cv2.resize(tex[y0 : y0 + s, x0 : x0 + s], (width, height), interpolation=cv2.INTER_LINEAR)
        y0 = int(rng.integers(0, n - height + 1))
        x0 = int(rng.integers(0, n - width + 1))
        crop = tex[y0 : y0 + height, x0 : x0 + width]
        if rng.random() < 0.5:
            crop = cv2.flip(crop, 1)  # (a negative-stride view would make cv2 copy slowly)
        gain = float(rng.uniform(0.7, 1.2))
        return cv2.convertScaleAbs(crop, alpha=gain)


@functools.lru_cache(maxsize=4)
def default_bank(seed: int = 0) -> BackgroundBank:
    """The process-wide :class:`BackgroundBank` of a seed (built once, about 0.3 s)."""
    return BackgroundBank(seed)


# ---------------------------------------------------------------------------------------------------
# Projection and rasterisation
# ---------------------------------------------------------------------------------------------------

_SHIFT = 4
_ONE = 1 << _SHIFT
_NEAR = 50.0  # mm: primitives closer than this to the image plane are not drawn
_BIG = 1e5  # px: coordinates are clipped to +-this before drawing


@dataclass(frozen=True)
class ProjectedBody:
    """Per-view 2D shapes of the primitives (see :func:`project_primitives`); ``P = C + E``."""

    depth: np.ndarray  # (V, P) camera depth of the centre, mm
    ok: np.ndarray  # (V, P) bool: in front of the camera
    cap_pa: np.ndarray  # (V, C, 2)
    cap_pb: np.ndarray  # (V, C, 2)
    cap_ra: np.ndarray  # (V, C) px
    cap_rb: np.ndarray  # (V, C) px
    ell_c: np.ndarray  # (V, E, 2)
    ell_axes: np.ndarray  # (V, E, 2) semi-axes px
    ell_angle: np.ndarray  # (V, E) degrees
    shade: np.ndarray  # (V, P) Lambert factor
    hl_dir: np.ndarray  # (V, P, 2) unit image direction of the highlight


def project_primitives(prims: Primitives, K: np.ndarray, R: np.ndarray, t: np.ndarray, light: Light):
    """Project the primitives into ``V`` pinhole cameras ``K, R (V, 3, 3)``, ``t (V, 3)`` (mm)."""
    K, R, t = (np.asarray(x, dtype=np.float64) for x in (K, R, t))
    V = len(K)
    l = np.asarray(light.direction, dtype=np.float64)
    l = l / np.linalg.norm(l)
    centres = -np.einsum("vji,vj->vi", R, t)  # (V, 3)
    f = 0.5 * (K[:, 0, 0] + K[:, 1, 1])  # (V,)

    # capsules
    ab = np.stack([prims.cap_a, prims.cap_b], 1)  # (C, 2, 3)
    Xc = np.einsum("vij,cej->vcei", R, ab) + t[:, None, None, :]  # (V, C, 2, 3)
    z = Xc[..., 2]
    zc = np.maximum(z, 1e-6)
    uv = Xc[..., :2] / zc[..., None] @ K[:, None, :2, :2].transpose(0, 1, 3, 2) + K[:, None, None, :2, 2]
    cap_ra = prims.cap_ra * f[:, None] / zc[..., 0]
    cap_rb = prims.cap_rb * f[:, None] / zc[..., 1]
    cap_depth = z.mean(-1)
    cap_ok = (z > _NEAR).all(-1)
    axis = prims.cap_b - prims.cap_a
    axis = axis / np.maximum(np.linalg.norm(axis, axis=-1, keepdims=True), 1e-9)  # (C, 3)
    mid = 0.5 * (prims.cap_a + prims.cap_b)
    view = centres[:, None, :] - mid[None]  # (V, C, 3) towards the camera
    n_cap = view - axis * (view * axis).sum(-1, keepdims=True)
    n_cap /= np.maximum(np.linalg.norm(n_cap, axis=-1, keepdims=True), 1e-9)

    # ellipsoids: dual quadric Q* = H diag(1, 1, 1, -1) H^T, projected dual conic C* = P Q* P^T
    E = prims.num_ellipsoids
    Hm = np.zeros((E, 4, 4))
    Hm[:, :3, :3] = prims.ell_A
    Hm[:, :3, 3] = prims.ell_c
    Hm[:, 3, 3] = 1.0
    Qs = Hm @ np.diag([1.0, 1.0, 1.0, -1.0]) @ Hm.transpose(0, 2, 1)
    P = K @ np.concatenate([R, t[..., None]], -1)  # (V, 3, 4)
    Cs = np.einsum("vij,ejk,vlk->veil", P, Qs, P)  # (V, E, 3, 3)
    w = -Cs[..., 2, 2]
    Cn = Cs / np.where(np.abs(w) > 1e-12, w, 1e-12)[..., None, None]
    ec = -Cn[..., :2, 2]
    S = Cn[..., :2, :2] + ec[..., :, None] * ec[..., None, :]
    tr, det = S[..., 0, 0] + S[..., 1, 1], S[..., 0, 0] * S[..., 1, 1] - S[..., 0, 1] ** 2
    disc = np.sqrt(np.maximum(tr * tr / 4 - det, 0.0))
    lam1, lam2 = tr / 2 + disc, tr / 2 - disc
    ell_axes = np.sqrt(np.maximum(np.stack([lam1, lam2], -1), 0.0))
    ell_angle = np.degrees(0.5 * np.arctan2(2 * S[..., 0, 1], S[..., 0, 0] - S[..., 1, 1]))
    ez = np.einsum("vij,ej->vei", R, prims.ell_c)[..., 2] + t[:, None, 2]
    ext = np.linalg.norm(prims.ell_A, axis=1).max(-1)  # (E,) largest semi-axis
    ell_ok = (ez - ext[None] > _NEAR) & (w > 0)
    n_ell = centres[:, None, :] - prims.ell_c[None]
    n_ell /= np.maximum(np.linalg.norm(n_ell, axis=-1, keepdims=True), 1e-9)

    normals = np.concatenate([n_cap, n_ell], 1)  # (V, P, 3)
    shade = light.ambient + light.diffuse * np.maximum(normals @ l, 0.0)
    # highlight: where the visible surface faces the light, as an image direction
    lc = R @ l  # (V, 3) light direction in camera axes (x right, y down, z forward)
    hl = np.broadcast_to(lc[:, None, :2], (V, len(normals[0]), 2)).copy()
    d2 = uv[:, :, 1] - uv[:, :, 0]  # capsule image axis
    d2 /= np.maximum(np.linalg.norm(d2, axis=-1, keepdims=True), 1e-9)
    C = prims.num_capsules
    hl[:, :C] -= d2 * (hl[:, :C] * d2).sum(-1, keepdims=True)
    hl /= np.maximum(np.linalg.norm(hl, axis=-1, keepdims=True), 1e-9)
    return ProjectedBody(
        depth=np.concatenate([cap_depth, ez], 1),
        ok=np.concatenate([cap_ok, ell_ok], 1),
        cap_pa=uv[:, :, 0],
        cap_pb=uv[:, :, 1],
        cap_ra=cap_ra,
        cap_rb=cap_rb,
        ell_c=ec,
        ell_axes=ell_axes,
        ell_angle=ell_angle,
        shade=shade,
        hl_dir=hl,
    )


def silhouette_boxes(proj: ProjectedBody) -> np.ndarray:
    """Bounding boxes ``(V, 4)`` ``(l, t, r, b)`` px of the drawn body (the union of the projected
    capsule discs and ellipses in front of the camera): the box a person mask would give."""
    V = proj.depth.shape[0]
    C = proj.cap_pa.shape[1]
    ends = np.concatenate([proj.cap_pa, proj.cap_pb], 1)  # (V, 2C, 2)
    rad = np.concatenate([proj.cap_ra, proj.cap_rb], 1)[..., None]
    lo_c, hi_c = ends - rad, ends + rad
    # half extents of an ellipse with semi-axes (a, b) at angle th along x and y
    th = np.radians(proj.ell_angle)
    a, b = proj.ell_axes[..., 0], proj.ell_axes[..., 1]
    hx = np.sqrt((a * np.cos(th)) ** 2 + (b * np.sin(th)) ** 2)
    hy = np.sqrt((a * np.sin(th)) ** 2 + (b * np.cos(th)) ** 2)
    half = np.stack([hx, hy], -1)
    lo = np.concatenate([lo_c, proj.ell_c - half], 1)
    hi = np.concatenate([hi_c, proj.ell_c + half], 1)
    ok = np.concatenate([proj.ok[:, :C], proj.ok[:, :C], proj.ok[:, C:]], 1)[..., None]
    lo = np.where(ok, lo, np.inf).min(1)
    hi = np.where(ok, hi, -np.inf).max(1)
    out = np.concatenate([lo, hi], 1)
    return np.where(np.isfinite(out), out, np.nan).reshape(V, 4)


# Each primitive is drawn in three layers: a rim (the full outline, darker), the body colour (inset by
# the rim width) and a highlight (a smaller copy shifted towards the light, lighter). Colours are
# ``base * mul + add``; _LAYERS holds (mul, add) per layer.
_LAYERS = ((0.55, 0.0), (1.0, 0.0), (0.8, 55.0))
_GROW = 0.55  # px: cv2's filled shapes cover about this much beyond the ideal outline
_HL_SIZE, _HL_OFFSET = 0.42, 0.38  # highlight radius and shift, fractions of the radius


def _rim(r: float) -> float:
    return min(max(0.15 * r, 0.6), 2.5)


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(x * _ONE + 0.5), int(y * _ONE + 0.5)


def _capsule_layer(img, ax, ay, bx, by, r_a, r_b, nx, ny, col, aa):
    if r_a > 0.25:
        cv2.circle(img, _pt(ax, ay), int(r_a * _ONE + 0.5), col, -1, aa, _SHIFT)
    if r_b > 0.25:
        cv2.circle(img, _pt(bx, by), int(r_b * _ONE + 0.5), col, -1, aa, _SHIFT)
    if nx or ny:
        poly = np.array(
            [
                [ax + nx * r_a, ay + ny * r_a],
                [bx + nx * r_b, by + ny * r_b],
                [bx - nx * r_b, by - ny * r_b],
                [ax - nx * r_a, ay - ny * r_a],
            ]
        )
        cv2.fillConvexPoly(img, (poly * _ONE + 0.5).astype(np.int32), col, aa, _SHIFT)


def _draw_capsule(img, pa, pb, ra, rb, hl, cols, aa):
    dx, dy = pb[0] - pa[0], pb[1] - pa[1]
    n = math.hypot(dx, dy)
    nx, ny = (-dy / n, dx / n) if n > 1e-6 else (0.0, 0.0)
    ax, ay, bx, by = pa[0], pa[1], pb[0], pb[1]
    ra0, rb0 = ra - _GROW, rb - _GROW
    if ra0 < 0.25 and rb0 < 0.25:
        return
    _capsule_layer(img, ax, ay, bx, by, ra0, rb0, nx, ny, cols[0], aa)
    rim = _rim(0.5 * (ra + rb))
    _capsule_layer(img, ax, ay, bx, by, ra0 - rim, rb0 - rim, nx, ny, cols[1], aa)
    o = _HL_OFFSET * 0.5 * (ra + rb)
    ox, oy = hl[0] * o, hl[1] * o
    _capsule_layer(img, ax + ox, ay + oy, bx + ox, by + oy, _HL_SIZE * ra, _HL_SIZE * rb, nx, ny, cols[2], aa)


def _ellipse_layer(img, cx, cy, a, b, angle, col, aa):
    if a > 0.25 and b > 0.25:
        cv2.ellipse(
            img, _pt(cx, cy), (int(a * _ONE + 0.5), int(b * _ONE + 0.5)), angle, 0, 360, col, -1, aa, _SHIFT
        )


def _draw_ellipse(img, c, axes, angle, hl, cols, aa):
    a, b = axes[0] - _GROW, axes[1] - _GROW
    _ellipse_layer(img, c[0], c[1], a, b, angle, cols[0], aa)
    rim = _rim(0.5 * (axes[0] + axes[1]))
    _ellipse_layer(img, c[0], c[1], a - rim, b - rim, angle, cols[1], aa)
    o = _HL_OFFSET * 0.5 * (axes[0] + axes[1])
    _ellipse_layer(img, c[0] + hl[0] * o, c[1] + hl[1] * o, _HL_SIZE * a, _HL_SIZE * b, angle, cols[2], aa)


def render_view(
    image: np.ndarray,
    prims: Primitives,
    proj: ProjectedBody,
    view: int,
    occluders: list[Occluder] = (),
    antialias: bool = True,
) -> np.ndarray:
    """Draw the body (and then the occluders) of one view into ``image (H, W, 3)`` uint8 RGB, in
    place, back to front. ``proj`` comes from :func:`project_primitives`. Returns ``image``."""
    aa = cv2.LINE_AA if antialias else cv2.LINE_8
    C = prims.num_capsules
    base = prims.colors * proj.shade[view][:, None]  # (P, 3)
    layer_cols = np.stack([np.clip(base * m + o, 0, 255) for (m, o) in _LAYERS], 1)  # (P, L, 3)
    cols = layer_cols.tolist()
    order = np.argsort(-proj.depth[view], kind="stable").tolist()
    ok = proj.ok[view].tolist()
    pa = np.clip(proj.cap_pa[view], -_BIG, _BIG).tolist()
    pb = np.clip(proj.cap_pb[view], -_BIG, _BIG).tolist()
    ra, rb = np.minimum(proj.cap_ra[view], _BIG).tolist(), np.minimum(proj.cap_rb[view], _BIG).tolist()
    ec = np.clip(proj.ell_c[view], -_BIG, _BIG).tolist()
    eax = np.minimum(proj.ell_axes[view], _BIG).tolist()
    ean = proj.ell_angle[view].tolist()
    hl = proj.hl_dir[view].tolist()
    for p in order:
        if not ok[p]:
            continue
        if p < C:
            _draw_capsule(image, pa[p], pb[p], ra[p], rb[p], hl[p], cols[p], aa)
        else:
            e = p - C
            _draw_ellipse(image, ec[e], eax[e], ean[e], hl[p], cols[p], aa)
    for o in occluders:
        dark = tuple(int(0.5 * c) for c in o.color)
        if o.kind == "disc":
            c = (int(o.center[0] * _ONE), int(o.center[1] * _ONE))
            cv2.circle(image, c, int(o.size[0] * _ONE), o.color, -1, aa, _SHIFT)
            cv2.circle(image, c, int(o.size[0] * _ONE), dark, 2, aa, _SHIFT)
        else:
            pts = (o.corners() * _ONE).astype(np.int32)
            cv2.fillConvexPoly(image, pts, o.color, aa, _SHIFT)
            cv2.polylines(image, [pts], True, dark, 2, aa, _SHIFT)
    return image


def render_views(
    prims: Primitives,
    K: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    image_size: tuple[int, int],
    light: Light = Light(),
    backgrounds: np.ndarray | None = None,
    occluders: list[list[Occluder]] | None = None,
    frame_boxes: np.ndarray | None = None,
    antialias: bool = True,
) -> np.ndarray:
    """Render ``V`` views of a body.

    Args:
        prims: the body (:func:`body_primitives`).
        K, R: ``(V, 3, 3)`` pinhole intrinsics of the rendered images (px) and world-to-camera
            rotations; t: ``(V, 3)`` mm.
        image_size: ``(width, height)`` px.
        light: the light.
        backgrounds: ``(V, H, W, 3)`` uint8 RGB (copied); default mid grey.
        occluders: per view, a list of :class:`Occluder` drawn in front of the body.
        frame_boxes: ``(V, 4)`` ``(l, t, r, b)``: the part of each rendered image that the real
            camera sees (its full frame, in rendered px); pixels outside are set to black, as a
            crop reaching beyond the frame would be. ``None``: no masking.
        antialias: anti-aliased edges (``cv2.LINE_AA``).

    Returns:
        ``(V, H, W, 3)`` uint8 RGB.
    """
    W, H = (int(x) for x in image_size)
    V = len(K)
    if backgrounds is None:
        images = np.full((V, H, W, 3), 110, np.uint8)
    else:
        images = np.ascontiguousarray(backgrounds, dtype=np.uint8).copy()
        if images.shape != (V, H, W, 3):
            raise ValueError(f"render_views: backgrounds must be {(V, H, W, 3)}, got {images.shape}")
    proj = project_primitives(prims, K, R, t, light)
    for v in range(V):
        render_view(images[v], prims, proj, v, occluders[v] if occluders else (), antialias)
        if frame_boxes is not None:
            _black_outside(images[v], frame_boxes[v])
    return images


def _black_outside(img: np.ndarray, box) -> None:
    H, W = img.shape[:2]
    l, t, r, b = (
        math.floor(box[0] + 0.5),
        math.floor(box[1] + 0.5),
        math.ceil(box[2] - 0.5),
        math.ceil(box[3] - 0.5),
    )
    l, t, r, b = (min(max(x, 0), lim) for x, lim in ((l, W), (t, H), (r, W), (b, H)))
    if l > 0:
        img[:, :l] = 0
    if r < W:
        img[:, r:] = 0
    if t > 0:
        img[:t] = 0
    if b < H:
        img[b:] = 0


# ---------------------------------------------------------------------------------------------------
# Visibility
# ---------------------------------------------------------------------------------------------------


def _capsule_spheres(prims: Primitives, max_spheres: int = 24) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres ``(S, 3)``, radii ``(S,)`` and owning capsule ``(S,)`` of sphere chains covering the
    capsules (spacing at most 0.6 of the smaller end radius)."""
    L = np.linalg.norm(prims.cap_b - prims.cap_a, axis=-1)
    n = np.clip(np.ceil(L / (0.6 * np.minimum(prims.cap_ra, prims.cap_rb))).astype(int) + 1, 2, max_spheres)
    owner = np.repeat(np.arange(len(n)), n)
    s = np.concatenate([np.linspace(0.0, 1.0, k) for k in n])
    c = prims.cap_a[owner] + s[:, None] * (prims.cap_b - prims.cap_a)[owner]
    r = prims.cap_ra[owner] + s * (prims.cap_rb - prims.cap_ra)[owner]
    return c, r, owner


def joint_visibility(
    prims: Primitives,
    joints: np.ndarray,
    K: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    image_size: tuple[int, int],
    occluders: list[list[Occluder]] | None = None,
    frame_boxes: np.ndarray | None = None,
    margin_mm: float = 10.0,
) -> np.ndarray:
    """Visibility ``(V, 17)`` of the H36M17 ``joints (17, 3)`` in the rendered views (module
    docstring: in front, inside the image and the frame, not under an occluder, not behind a body
    part it is not attached to by more than ``margin_mm``)."""
    K, R, t = (np.asarray(x, dtype=np.float64) for x in (K, R, t))
    X = np.asarray(joints, dtype=np.float64)
    W, H = image_size
    Xc = np.einsum("vij,nj->vni", R, X) + t[:, None]
    z = Xc[..., 2]
    uv = Xc[..., :2] / np.maximum(z, 1e-9)[..., None] @ K[:, :2, :2].transpose(0, 2, 1) + K[:, None, :2, 2]
    vis = (
        (z > _NEAR)
        & (uv[..., 0] >= -0.5)
        & (uv[..., 0] < W - 0.5)
        & (uv[..., 1] >= -0.5)
        & (uv[..., 1] < H - 0.5)
    )
    if frame_boxes is not None:
        fb = np.asarray(frame_boxes, dtype=np.float64)[:, None]
        vis &= (
            (uv[..., 0] >= fb[..., 0])
            & (uv[..., 0] < fb[..., 2])
            & (uv[..., 1] >= fb[..., 1])
            & (uv[..., 1] < fb[..., 3])
        )
    if occluders:
        for v, occ in enumerate(occluders):
            for o in occ:
                vis[v] &= ~o.contains(uv[v])
    # rays from each camera centre to each joint: P(s) = O + s D, s in [0, 1]
    O = -np.einsum("vji,vj->vi", R, t)[:, None, None, :]  # (V, 1, 1, 3)
    D = X[None, :, None, :] - O  # (V, J, 1, 3)
    dist = np.linalg.norm(D, axis=-1)  # (V, J, 1)
    s_max = 1.0 - margin_mm / np.maximum(dist, 1e-9)
    # spheres of the capsules
    sc, sr, owner = _capsule_spheres(prims)
    oc = O - sc[None, None]  # (V, 1, S, 3)
    a = (D * D).sum(-1)
    b = 2.0 * (D * oc).sum(-1)
    c = (oc * oc).sum(-1) - sr**2
    disc = b * b - 4 * a * c
    s1 = (-b - np.sqrt(np.maximum(disc, 0.0))) / (2 * a)
    s2 = (-b + np.sqrt(np.maximum(disc, 0.0))) / (2 * a)
    hit = (disc > 0) & (s1 < s_max) & (s2 > 0)  # (V, J, S)
    hit &= ~prims.attached[owner].T[None]  # attached capsules never hide their joints
    blocked = hit.any(-1)
    # ellipsoids: in the unit-sphere frame of each
    Ainv = np.linalg.inv(prims.ell_A)  # (E, 3, 3)
    o2 = np.einsum("eij,vxej->vxei", Ainv, O - prims.ell_c[None, None])  # (V, 1, E, 3)
    d2 = np.einsum("eij,vnxj->vnei", Ainv, D)  # (V, J, E, 3)
    a = (d2 * d2).sum(-1)
    b = 2.0 * (d2 * o2).sum(-1)
    c = (o2 * o2).sum(-1) - 1.0
    disc = b * b - 4 * a * c
    s1 = (-b - np.sqrt(np.maximum(disc, 0.0))) / (2 * a)
    s2 = (-b + np.sqrt(np.maximum(disc, 0.0))) / (2 * a)
    hit = (disc > 0) & (s1 < s_max) & (s2 > 0)
    hit &= ~prims.attached[prims.num_capsules :].T[None]
    blocked |= hit.any(-1)
    return vis & ~blocked
