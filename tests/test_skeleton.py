"""Tests for mvpose.skeleton: joint sets, trees, flips and maps between sets."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from mvpose import skeleton as sk
from mvpose.skeleton import (
    BODY25,
    BODY25B,
    COCO17,
    H36M17,
    H36M17_LT,
    H36M17_LT_LIMBS,
    MPI3DHP17,
    MPI3DHP28,
    MPI3DHP28_TO_17,
    JointMap,
    Skeleton,
    available_joint_maps,
    available_skeletons,
    get_joint_map,
    get_skeleton,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
ALL = [get_skeleton(n) for n in available_skeletons()]
IDS = [s.name for s in ALL]
EXTRA_MAPS = [("coco17", "h36m17_lt"), ("body25", "h36m17_lt"), ("mpi3dhp28", "h36m17"), ("h36m17", "h36m17")]
ALL_MAPS = list(available_joint_maps()) + EXTRA_MAPS


def _mirror(name: str) -> str:
    if name.startswith("left_"):
        return "right_" + name[5:]
    if name.startswith("right_"):
        return "left_" + name[6:]
    return name


# ------------------------------------------------------------------------------------------------
# the skeletons
# ------------------------------------------------------------------------------------------------


def test_registry_has_the_seven_sets():
    assert set(available_skeletons()) == {
        "h36m17",
        "h36m17_lt",
        "coco17",
        "mpi3dhp28",
        "mpi3dhp17",
        "body25",
        "body25b",
    }
    assert [s.num_joints for s in (H36M17, H36M17_LT, COCO17, MPI3DHP28, MPI3DHP17, BODY25, BODY25B)] == [
        17,
        17,
        17,
        28,
        17,
        25,
        25,
    ]


@pytest.mark.parametrize("skel", ALL, ids=IDS)
def test_parents_form_a_tree(skel):
    assert skel.parents.count(-1) == 1 and skel.parents[skel.root] == -1
    for j in range(skel.num_joints):
        seen, k = set(), j
        while k != skel.root:
            assert k not in seen, f"cycle through joint {k}"
            seen.add(k)
            k = skel.parents[k]
            assert 0 <= k < skel.num_joints
    assert len(skel.limbs) == skel.num_joints - 1
    assert all(skel.parents[c] == p for p, c in skel.limbs)
    assert [c for _, c in skel.limbs] == sorted(c for _, c in skel.limbs)  # joint order
    kids = [c for j in range(skel.num_joints) for c in skel.children(j)]
    assert sorted(kids) == sorted(set(range(skel.num_joints)) - {skel.root})


@pytest.mark.parametrize("skel", ALL, ids=IDS)
def test_flip_is_an_involution_swapping_left_and_right(skel):
    f = skel.flip_indices
    assert sorted(f) == list(range(skel.num_joints))
    assert all(f[f[j]] == j for j in range(skel.num_joints))
    for j, name in enumerate(skel.joint_names):
        assert skel.joint_names[f[j]] == _mirror(name)
    assert len(skel.left_indices) == len(skel.right_indices) > 0
    assert sorted(f[j] for j in skel.left_indices) == list(skel.right_indices)
    centre = set(range(skel.num_joints)) - set(skel.left_indices) - set(skel.right_indices)
    assert all(f[j] == j for j in centre)


@pytest.mark.parametrize("skel", [s for s in ALL if s.name != "coco17"], ids=lambda s: s.name)
def test_tree_is_mirror_symmetric_when_rooted_on_the_midline(skel):
    f, par = skel.flip_indices, skel.parents
    assert f[skel.root] == skel.root
    for j in range(skel.num_joints):
        assert (par[f[j]] == -1 and par[j] == -1) or par[f[j]] == f[par[j]]


def test_h36m17_is_videopose3d_order():
    assert H36M17.joint_names == (
        "pelvis",
        "right_hip",
        "right_knee",
        "right_ankle",
        "left_hip",
        "left_knee",
        "left_ankle",
        "spine",
        "thorax",
        "neck_nose",
        "head",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "right_shoulder",
        "right_elbow",
        "right_wrist",
    )
    assert H36M17.parents == (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
    assert H36M17.flip_indices == (0, 4, 5, 6, 1, 2, 3, 7, 8, 9, 10, 14, 15, 16, 11, 12, 13)
    assert H36M17.root == 0


def test_h36m17_lt_order_and_limbs():
    names = "right_ankle right_knee right_hip left_hip left_knee left_ankle pelvis spine thorax head "
    names += "right_wrist right_elbow right_shoulder left_shoulder left_elbow left_wrist neck_nose"
    assert H36M17_LT.joint_names == tuple(names.split())
    assert H36M17_LT.root == 6 and H36M17_LT.index("pelvis") == 6
    expected = ((0, 1), (1, 2), (2, 6), (5, 4), (4, 3), (3, 6), (6, 7), (7, 8), (8, 16), (9, 16))
    expected += ((8, 12), (11, 12), (10, 11), (8, 13), (13, 14), (14, 15))
    assert H36M17_LT_LIMBS == expected
    # same bones as the tree, only ordered/oriented differently
    assert {frozenset(lb) for lb in H36M17_LT_LIMBS} == {frozenset(lb) for lb in H36M17_LT.limbs}


def test_h36m17_lt_limbs_match_contextpose_readme():
    readme = SHARED / "fixtures/official/contextpose/README.md"
    if not readme.exists():
        pytest.skip("no ContextPose fixture README")
    text = readme.read_text()
    block = text[text.index("Limbs, in this order") :].split("\n\n")[0]
    pairs = tuple((int(a), int(b)) for a, b in re.findall(r"\d+ \((\d+),(\d+)\)", block))
    assert pairs == H36M17_LT_LIMBS


def test_lt_order_equals_videopose_order_under_the_map():
    x = torch.randn(4, 17, 3, generator=torch.Generator().manual_seed(0))
    y = get_joint_map("h36m17", "h36m17_lt").apply(x)
    for j, name in enumerate(H36M17_LT.joint_names):
        torch.testing.assert_close(y[:, j], x[:, H36M17.index(name)], rtol=0, atol=0)
    back = get_joint_map("h36m17_lt", "h36m17").apply(y)
    torch.testing.assert_close(back, x, rtol=0, atol=0)
    assert get_joint_map("h36m17", "h36m17_lt").is_exact


def test_mpi3dhp_28_to_17_matches_sample_labels():
    path = SHARED / "data/other_calibrations/mpi_inf_3dhp_sample_labels.json"
    if not path.exists():
        pytest.skip("no 3DHP sample labels")
    labels = json.loads(path.read_text())
    names = ["pelvis" if n == "root" else n for n in labels["joint_names"]]
    assert MPI3DHP17.joint_names == tuple(names)
    assert MPI3DHP28_TO_17 == tuple(labels["mpi_inf_3dhp_28_joint_index"])
    assert tuple(MPI3DHP28.joint_names[i] for i in MPI3DHP28_TO_17) == MPI3DHP17.joint_names
    jm = get_joint_map("mpi3dhp28", "mpi3dhp17")
    assert jm.is_exact
    assert tuple(s[0][0] for s in jm.sources) == MPI3DHP28_TO_17
    x = torch.randn(2, 3, 28, 3)
    torch.testing.assert_close(jm.apply(x), x[..., list(MPI3DHP28_TO_17), :], rtol=0, atol=0)
    assert MPI3DHP17.root == 14 and MPI3DHP28.root == 4


def _camel_to_snake(name: str) -> str:
    if name == "Head":
        return "head_top"
    side = {"L": "left_", "R": "right_"}.get(name[0]) if name[1:2].isupper() else None
    body = name[1:] if side else name
    return (side or "") + re.sub(r"(?<!^)([A-Z])", r"_\1", body).lower()


def test_body25b_order_matches_pose2sim_readme():
    readme = SHARED / "data/pose2sim_demo/README.txt"
    if not readme.exists():
        pytest.skip("no Pose2Sim demo README")
    text = readme.read_text()
    block = text[text.index("Keypoint order (OpenPose BODY_25B)") :].split("Pose2Sim uses")[0]
    found = re.findall(r"(\d+) ([A-Z][A-Za-z]+)", block)
    assert [int(i) for i, _ in found] == list(range(25))
    assert BODY25B.joint_names == tuple(_camel_to_snake(n) for _, n in found)


def test_body25_and_coco_orders():
    assert COCO17.joint_names[:5] == ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
    assert COCO17.joint_names[-2:] == ("left_ankle", "right_ankle")
    assert BODY25B.joint_names[:17] == COCO17.joint_names
    assert BODY25.joint_names[8] == "mid_hip" and BODY25.root == 8
    assert BODY25.joint_names[19:] == (
        "left_big_toe",
        "left_small_toe",
        "left_heel",
        "right_big_toe",
        "right_small_toe",
        "right_heel",
    )
    assert COCO17.joint_names[COCO17.root] == "left_hip"


def test_lookup_errors_list_the_choices():
    assert get_skeleton("H36M17") is H36M17 and get_skeleton(" Body25B ") is BODY25B
    assert get_skeleton(COCO17) is COCO17
    with pytest.raises(KeyError) as e:
        get_skeleton("h36m32")
    assert all(n in str(e.value) for n in available_skeletons())
    with pytest.raises(KeyError) as e:
        H36M17.index("left_toe")
    assert "left_knee" in str(e.value) and "left_toe" in str(e.value)
    with pytest.raises(KeyError, match="direct maps"):
        get_joint_map("h36m17", "coco17")


def test_children_and_index():
    assert H36M17.children(0) == (1, 4, 7)
    assert H36M17.children(8) == (9, 11, 14)
    assert H36M17.children(16) == ()
    assert H36M17_LT.index("neck_nose") == 16
    with pytest.raises(IndexError):
        H36M17.children(17)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"parents": (-1, 0, 1)}, "3 parents"),
        ({"parents": (-1, -1)}, "exactly one root"),
        ({"parents": (1, 0), "root": 0}, "exactly one root"),
        ({"joint_names": ("a", "a")}, "used twice"),
        ({"flip_indices": (1, 1)}, "not a permutation"),
        ({"root": 1}, "root is 1"),
        ({"parents": (-1, 1)}, "parent 1"),
    ],
)
def test_invalid_skeletons_are_rejected(kwargs, message):
    base = {"name": "t", "joint_names": ("a", "b"), "parents": (-1, 0), "flip_indices": (0, 1), "root": 0}
    with pytest.raises(ValueError, match=message):
        Skeleton(**{**base, **kwargs})


def test_cycles_and_non_involutions_are_rejected():
    with pytest.raises(ValueError, match="cycle"):
        Skeleton("t", ("a", "b", "c"), (-1, 2, 1), (0, 1, 2), 0)
    with pytest.raises(ValueError, match="involution"):
        Skeleton("t", ("a", "b", "c"), (-1, 0, 0), (1, 2, 0), 0)
    with pytest.raises(ValueError, match="no mirror"):
        Skeleton.from_parent_names("t", ("hip", "left_leg"), {"hip": None, "left_leg": "hip"})
    s = Skeleton("t", ["a", "b"], [-1, 0], [0, 1], 0)  # lists are stored as tuples (hashable)
    assert isinstance(s.parents, tuple) and hash(s) == hash(Skeleton("t", ("a", "b"), (-1, 0), (0, 1), 0))


# ------------------------------------------------------------------------------------------------
# joint maps
# ------------------------------------------------------------------------------------------------


def test_required_direct_maps_exist():
    required = {
        ("h36m17", "h36m17_lt"),
        ("h36m17_lt", "h36m17"),
        ("mpi3dhp28", "mpi3dhp17"),
        ("mpi3dhp17", "h36m17"),
        ("h36m17", "mpi3dhp17"),
        ("coco17", "h36m17"),
        ("body25", "h36m17"),
        ("body25b", "h36m17"),
        ("body25", "coco17"),
        ("body25b", "coco17"),
    }
    assert required <= set(available_joint_maps())


@pytest.mark.parametrize("pair", ALL_MAPS, ids=lambda p: f"{p[0]}->{p[1]}")
def test_map_weights_sum_to_one_and_flags_have_notes(pair):
    jm = get_joint_map(*pair)
    assert isinstance(jm, JointMap)
    assert jm.matrix.shape == (jm.dst.num_joints, jm.src.num_joints)
    np.testing.assert_allclose(jm.matrix.sum(1), 1.0, atol=1e-12)
    assert (jm.matrix >= 0).all()
    for j, (s, approx, note) in enumerate(zip(jm.sources, jm.approximate, jm.notes)):
        assert s and abs(sum(w for _, w in s) - 1) < 1e-9
        if approx:
            assert note, f"{jm.dst.joint_names[j]} is approximate without a note"
        else:  # exact targets copy the same-named source joint
            assert len(s) == 1 and jm.src.joint_names[s[0][0]] == jm.dst.joint_names[j]
    assert jm.dst.joint_names[0] in jm.describe()


@pytest.mark.parametrize("pair", ALL_MAPS, ids=lambda p: f"{p[0]}->{p[1]}")
def test_maps_preserve_nan_masks(pair):
    jm = get_joint_map(*pair)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, jm.src.num_joints, 3, generator=g, dtype=torch.float64)
    missing = torch.rand(64, jm.src.num_joints, generator=g) < 0.2
    x[missing] = float("nan")
    y = jm.apply(x)
    mask = jm.apply_mask(~missing)
    assert y.shape == (64, jm.dst.num_joints, 3) and mask.dtype == torch.bool
    assert torch.equal(torch.isnan(y).any(-1), ~mask)
    assert torch.equal(torch.isnan(y).all(-1), ~mask)
    # expected mask, joint by joint from the source lists
    used = torch.as_tensor(jm.matrix != 0)
    expect = ~(missing[:, None, :] & used[None]).any(-1)
    assert torch.equal(mask, expect)
    # the valid outputs equal the weighted sums of the sources
    filled = torch.nan_to_num(x)
    ref = torch.einsum("ds,bsc->bdc", torch.tensor(jm.matrix), filled)
    torch.testing.assert_close(y[mask], ref[mask])


def test_partial_nan_stays_in_its_coordinate_and_unused_nans_do_not_leak():
    jm = get_joint_map("coco17", "h36m17")
    x = torch.ones(1, 17, 3)
    x[0, COCO17.index("left_eye")] = float("nan")  # unused by coco17 -> h36m17
    x[0, COCO17.index("left_hip"), 1] = float("nan")
    y = jm.apply(x)
    bad = {H36M17.joint_names[j] for j in torch.isnan(y[0]).any(-1).nonzero().flatten().tolist()}
    assert bad == {"pelvis", "spine", "left_hip"}
    assert torch.isnan(y[0, 0]).tolist() == [False, True, False]


def test_map_values_and_numpy_roundtrip():
    jm = get_joint_map("coco17", "h36m17")
    x = np.random.default_rng(0).normal(size=(5, 17, 3))
    y = jm.apply(x)
    assert isinstance(y, np.ndarray) and y.shape == (5, 17, 3)
    lh, rh = x[:, COCO17.index("left_hip")], x[:, COCO17.index("right_hip")]
    np.testing.assert_allclose(y[:, H36M17.index("pelvis")], (lh + rh) / 2)
    np.testing.assert_allclose(y[:, H36M17.index("left_wrist")], x[:, COCO17.index("left_wrist")])
    m = jm.apply_mask(np.ones((5, 17), dtype=bool))
    assert isinstance(m, np.ndarray) and m.all()
    approx = {H36M17.joint_names[j] for j, a in enumerate(jm.approximate) if a}
    assert approx == {"pelvis", "spine", "thorax", "neck_nose", "head"}
    with pytest.raises(ValueError, match="expected"):
        jm.apply(torch.zeros(2, 25, 3))


def test_documented_approximations():
    to_h36m = get_joint_map("mpi3dhp17", "h36m17")
    approx = {H36M17.joint_names[j] for j, a in enumerate(to_h36m.approximate) if a}
    assert approx == {"spine", "thorax", "neck_nose", "head"}
    src = {n: to_h36m.src.joint_names[s[0][0]] for n, s in zip(H36M17.joint_names, to_h36m.sources)}
    assert src["head"] == "head_top" and src["neck_nose"] == "head" and src["thorax"] == "neck"
    # 3DHP <-> H36M is a permutation both ways
    x = torch.randn(3, 17, 3)
    back = get_joint_map("h36m17", "mpi3dhp17").apply(to_h36m.apply(x))
    torch.testing.assert_close(back, x, rtol=0, atol=0)
    assert get_joint_map("body25", "coco17").is_exact and get_joint_map("body25b", "coco17").is_exact
    assert not get_joint_map("body25b", "h36m17").is_exact


def test_composed_map_equals_two_steps():
    a, b = get_joint_map("body25", "h36m17"), get_joint_map("h36m17", "h36m17_lt")
    c = get_joint_map("body25", "h36m17_lt")
    assert c.src is BODY25 and c.dst is H36M17_LT
    x = torch.randn(7, 25, 3, dtype=torch.float64)
    torch.testing.assert_close(c.apply(x), b.apply(a.apply(x)))
    assert c.approximate[H36M17_LT.index("pelvis")] and not c.approximate[H36M17_LT.index("left_knee")]
    ident = get_joint_map("coco17", "coco17")
    assert ident.is_exact and np.array_equal(ident.matrix, np.eye(17))


def test_joint_map_validation():
    with pytest.raises(ValueError, match="sum to"):
        JointMap(COCO17, COCO17, (((0, 0.5),),) * 17, (False,) * 17, ("",) * 17)
    with pytest.raises(ValueError, match="one per target joint"):
        JointMap(COCO17, COCO17, (((0, 1.0),),) * 16, (False,) * 17, ("",) * 17)
    with pytest.raises(ValueError, match="source index"):
        JointMap(COCO17, COCO17, (((17, 1.0),),) * 17, (False,) * 17, ("",) * 17)
    # a target without a source comes out NaN and masked
    srcs = (((0, 1.0),),) * 16 + ((),)
    jm = JointMap(COCO17, COCO17, srcs, (False,) * 16 + (True,), ("",) * 16 + ("no source",))
    assert torch.isnan(jm.apply(torch.zeros(2, 17, 3))[:, 16]).all()
    assert not jm.apply_mask(torch.ones(2, 17, dtype=torch.bool))[:, 16].any()
    assert not jm.is_exact


def test_module_exports():
    for name in sk.__all__:
        assert hasattr(sk, name)
