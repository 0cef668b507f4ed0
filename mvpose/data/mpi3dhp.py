"""MPI-INF-3DHP training set, multi-view, in the dataset's published layout.

Layout read (``<root>`` or ``<root>/train``)::

    S<k>/Seq<m>/camera.calibration             Skeletool text calibration, 14 cameras (mm)
    S<k>/Seq<m>/annot.mat                      MATLAB: annot2, annot3, univ_annot3, frames, cameras
    S<k>/Seq<m>/imageSequence/video_<c>.avi    one video per camera, or pre-extracted frames:
    S<k>/Seq<m>/imageSequence/video_<c>/img_%06d.jpg    numbered from 1 (frame i -> img_{i+1:06d})

``annot.mat`` holds one cell per camera (14 cells): ``annot3{c}`` is ``(N, 84)`` = 28 joints x
(x, y, z) in camera ``c``'s frame, mm; ``univ_annot3`` the same for the height-normalised
"universal" skeleton; ``annot2`` ``(N, 56)`` pixels. World joints are
``X = R_c^T (annot3{c} - t_c)`` for a reference camera ``c`` (the first selected one, or
``reference_camera``), with ``R_c, t_c`` from ``camera.calibration`` (read with
:func:`mvpose.calib.load_rig`; cameras are named ``cam_<index>``). v5 files are read with
``scipy.io.loadmat``; v7.3 (HDF5) files with h5py (cells as object references, arrays transposed).
The 28 joints are mapped to :data:`~mvpose.skeleton.MPI3DHP17` (or another set) with
:mod:`mvpose.skeleton`'s joint maps. There are no boxes in the dataset: each view's crop is the
box of the projected joints, squared and scaled by ``scale_bbox`` (mmpose's converter uses 1.2).

What was verified, and against what. No original file of the dataset was available here (see
../shared/data/README.md: not even ``camera.calibration``). The layout follows mmpose's
``tools/dataset_converters/preprocess_mpi_inf_3dhp.py`` (``annot3[cam][0]`` reshaped to
``(N, 28, 3)``, ``video_<cam>.avi`` read frame by frame, cameras 0, 1, 2, 4, 5, 6, 7, 8 kept, the
17-joint selection, per-sequence frame counts) and the calibration layout of
:mod:`mvpose.calib.mpi3dhp`. That ``annot3`` is in camera coordinates was checked on two real
labelled frames (shared/data/other_calibrations: ``R^T (annot3 - t)`` lands near the world origin
and reprojects onto ``annot2``). The tests run on synthetic files written in this layout
(``scipy.io.savemat``, an HDF5 imitation of v7.3, a tiny MJPG video). Seeking in the real videos
(``cv2.CAP_PROP_POS_FRAMES``) is untested; pre-extracted frames are the safer input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from mvpose.calib import load_rig
from mvpose.data.h36m import DatasetError, _image_size, build_views, read_rgb
from mvpose.data.transforms import square_bbox
from mvpose.skeleton import MPI3DHP17, Skeleton, get_joint_map, get_skeleton

__all__ = [
    "MPIInf3DHPMultiView",
    "load_3dhp_annotations",
    "MMPOSE_CAMERAS",
    "MMPOSE_FRAME_COUNTS",
]

#: The 8 training cameras mmpose's converter keeps (``train_cams``).
MMPOSE_CAMERAS = (0, 1, 2, 4, 5, 6, 7, 8)
#: Frames per (subject, sequence) as mmpose's converter reads them (``train_frame_nums``): the
#: annotation files can hold more rows than the videos have frames.
MMPOSE_FRAME_COUNTS = {
    ("S1", "Seq1"): 6416,
    ("S1", "Seq2"): 12430,
    ("S2", "Seq1"): 6502,
    ("S2", "Seq2"): 6081,
    ("S3", "Seq1"): 12488,
    ("S3", "Seq2"): 12283,
    ("S4", "Seq1"): 6171,
    ("S4", "Seq2"): 6675,
    ("S5", "Seq1"): 12820,
    ("S5", "Seq2"): 12312,
    ("S6", "Seq1"): 6188,
    ("S6", "Seq2"): 6145,
    ("S7", "Seq1"): 6239,
    ("S7", "Seq2"): 6320,
    ("S8", "Seq1"): 6468,
    ("S8", "Seq2"): 6054,
}
_ANNOTATIONS = ("annot3", "univ_annot3")


# ------------------------------------------------------------------------------------- annotations
def _cells_v5(path, mat, name) -> list[np.ndarray]:
    if name not in mat:
        raise DatasetError(
            path, name, f"missing; the file has {sorted(k for k in mat if not k.startswith('__'))}"
        )
    cells = np.asarray(mat[name])
    if cells.dtype != object:
        raise DatasetError(
            path, name, f"expected a cell array (one cell per camera), got {cells.dtype} {cells.shape}"
        )
    return [np.asarray(c, dtype=np.float64) for c in cells.reshape(-1)]


def _load_v73(path: Path, names: Iterable[str]) -> dict:
    import h5py

    out = {}
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DatasetError(path, None, f"neither a MATLAB v5 nor a v7.3 (HDF5) file ({e})") from None
    with f:
        for name in names:
            if name not in f:
                continue
            ds = f[name]
            if ds.dtype == h5py.ref_dtype:
                out[name] = [np.asarray(f[r], dtype=np.float64).T for r in ds[()].reshape(-1)]
            else:
                out[name] = np.asarray(ds[()]).T
    return out


def load_3dhp_annotations(path, annotation: str = "annot3") -> dict:
    """Read one sequence's ``annot.mat``.

    Returns:
        ``{"joints": list of per-camera (N_c, 28, 3) float64 arrays (camera frame, mm),
        "frames": (N,) int64 or None}``.

    Raises:
        FileNotFoundError / DatasetError naming the file and the field.
    """
    path = Path(path)
    if annotation not in _ANNOTATIONS:
        raise ValueError(f"annotation must be one of {_ANNOTATIONS}, got {annotation!r}")
    if not path.is_file():
        raise FileNotFoundError(f"MPI-INF-3DHP annotation file not found: {path}")
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path), variable_names=[annotation, "frames"])
    except NotImplementedError:  # v7.3: HDF5
        mat = None
    except ValueError as e:
        raise DatasetError(path, None, f"not a readable MATLAB file ({e})") from None
    if mat is not None:
        cells = _cells_v5(path, mat, annotation)
    else:
        mat = _load_v73(path, [annotation, "frames"])
        if annotation not in mat:
            raise DatasetError(path, annotation, f"missing; the file has {sorted(mat)}")
        cells = mat[annotation]
        if not isinstance(cells, list):
            raise DatasetError(
                path, annotation, "expected a cell array (object references), got a plain matrix"
            )
    frames = mat.get("frames")
    joints = []
    for c, a in enumerate(cells):
        if a.ndim != 2 or a.shape[1] != 84:
            raise DatasetError(
                path, f"{annotation}{{{c + 1}}}", f"expected (N, 84) = 28 joints x 3, got {a.shape}"
            )
        joints.append(a.reshape(-1, 28, 3))
    if frames is not None:
        frames = np.asarray(frames).reshape(-1).astype(np.int64)
    return {"joints": joints, "frames": frames}


def _camera_index(name: str) -> int:
    m = re.fullmatch(r"cam_(\d+)", name)
    return int(m.group(1)) if m else -1


# ---------------------------------------------------------------------------------------- dataset
class MPIInf3DHPMultiView(Dataset):
    """MPI-INF-3DHP training sequences as multi-view samples (docs/datasets.md contract).

    Args:
        root: folder holding ``S1/Seq1/...`` (or ``train/S1/Seq1/...``).
        subjects: e.g. ``("S1", "S2")``; default: every ``S<k>`` folder found.
        sequences: e.g. ``("Seq1",)``; default both.
        cameras: camera indices (``0..13``) or ``"all"`` (every camera of the calibration file);
            default :data:`MMPOSE_CAMERAS`.
        image_size: crop size ``(w, h)`` px or one int.
        scale_bbox: crop side as a multiple of the projected joints' box (mmpose: 1.2).
        annotation: ``"annot3"`` (default) or ``"univ_annot3"`` (the height-normalised skeleton;
            it does not match the images exactly).
        frames: ``"auto"`` (per view: the extracted frames if that folder exists, else the
            video), ``"images"`` or ``"video"``.
        retain_every_n_frames: keep every n-th frame of each sequence.
        skeleton: the joint set of the samples (default :data:`MPI3DHP17`; e.g. ``"h36m17_lt"``
            through the approximate maps of :mod:`mvpose.skeleton`).
        reference_camera: camera index whose ``annot3`` gives the world joints (default: the
            first selected camera).
        max_frames: cap on frames per sequence (default: :data:`MMPOSE_FRAME_COUNTS` where known).
        lt_bgr_quirk, interpolation: as :class:`~mvpose.data.Human36MMultiView`.

    Samples: ``subject`` ``"S1"``, ``action`` the sequence (``"Seq1"``), ``frame`` 0-based,
    ``camera_names`` ``["cam_0", ...]``; ``root_3d`` is the ground-truth root (pelvis).
    """

    def __init__(
        self,
        root,
        *,
        subjects: Iterable[str] | None = None,
        sequences: Iterable[str] = ("Seq1", "Seq2"),
        cameras: Iterable[int] | str = MMPOSE_CAMERAS,
        image_size: int | tuple[int, int] = 256,
        scale_bbox: float = 1.2,
        annotation: str = "annot3",
        frames: str = "auto",
        retain_every_n_frames: int = 1,
        skeleton: str | Skeleton = MPI3DHP17,
        reference_camera: int | None = None,
        max_frames: int | None = None,
        lt_bgr_quirk: bool = False,
        interpolation: int = cv2.INTER_AREA,
    ):
        self.root = Path(root)
        self.data_root = self.root / "train" if (self.root / "train").is_dir() else self.root
        if not self.data_root.is_dir():
            raise FileNotFoundError(f"MPI-INF-3DHP root not found: {self.root}")
        if frames not in ("auto", "images", "video"):
            raise ValueError(f"frames must be 'auto', 'images' or 'video', got {frames!r}")
        if scale_bbox <= 0:
            raise ValueError(f"scale_bbox must be positive, got {scale_bbox}")
        n = int(retain_every_n_frames)
        if n < 1:
            raise ValueError(f"retain_every_n_frames must be >= 1, got {retain_every_n_frames}")
        self.image_size = _image_size(image_size)
        self.scale_bbox = float(scale_bbox)
        self.frames_source = frames
        self.annotation = annotation
        self.lt_bgr_quirk = bool(lt_bgr_quirk)
        self.interpolation = interpolation
        self.skeleton = get_skeleton(skeleton)
        jm = get_joint_map("mpi3dhp28", "mpi3dhp17")
        if self.skeleton != MPI3DHP17:
            jm = jm.then(get_joint_map("mpi3dhp17", self.skeleton))
        self.joint_map = jm
        self._valid = jm.apply_mask(np.ones(28, dtype=bool))

        if subjects is None:
            subjects = sorted(
                (p.name for p in self.data_root.iterdir() if p.is_dir() and re.fullmatch(r"S\d+", p.name)),
                key=lambda s: int(s[1:]),
            )
            if not subjects:
                raise FileNotFoundError(f"no S<k> subject folders in {self.data_root}")
        self._sequences: list[dict] = []
        self._items: list[tuple[int, int]] = []
        names = None
        for subj in subjects:
            for seq in sequences:
                info = self._load_sequence(str(subj), str(seq), cameras, reference_camera, max_frames)
                if names is None:
                    names = info["camera_names"]
                elif info["camera_names"] != names:
                    raise DatasetError(
                        info["dir"] / "camera.calibration",
                        None,
                        f"cameras {info['camera_names']} differ from the first sequence's {names}",
                    )
                k = len(self._sequences)
                self._sequences.append(info)
                self._items.extend((k, f) for f in range(0, info["num_frames"], n))
        if not self._items:
            raise ValueError(f"no frames found under {self.data_root} for subjects {list(subjects)}")
        self._camera_names = list(names)
        self._lookup: dict[tuple[str, str, int], int] | None = None

    def _load_sequence(self, subj, seq, cameras, reference_camera, max_frames) -> dict:
        d = self.data_root / subj / seq
        if not d.is_dir():
            raise FileNotFoundError(f"MPI-INF-3DHP sequence folder not found: {d}")
        calib = d / "camera.calibration"
        rig = load_rig(calib, format="3dhp")
        index = [_camera_index(nm) for nm in rig.names]
        if isinstance(cameras, str):
            if cameras != "all":
                raise ValueError(f"cameras must be camera indices or 'all', got {cameras!r}")
            views = list(range(len(index)))
        else:
            views = []
            for c in cameras:
                if int(c) not in index:
                    raise DatasetError(
                        calib, f"cam_{int(c)}", f"no such camera; the file has {list(rig.names)}"
                    )
                views.append(index.index(int(c)))
        if not views:
            raise ValueError("no cameras selected")
        ann = load_3dhp_annotations(d / "annot.mat", self.annotation)
        ref = index[views[0]] if reference_camera is None else int(reference_camera)
        if ref not in index:
            raise DatasetError(
                calib, f"cam_{ref}", f"reference camera missing; the file has {list(rig.names)}"
            )
        if not 0 <= ref < len(ann["joints"]):
            raise DatasetError(
                d / "annot.mat", self.annotation, f"{len(ann['joints'])} cells, no cell for camera {ref}"
            )
        cam_joints = ann["joints"][ref]
        num = len(cam_joints)
        if ann["frames"] is not None:
            num = min(num, len(ann["frames"]))
        cap = max_frames if max_frames is not None else MMPOSE_FRAME_COUNTS.get((subj, seq))
        if cap is not None:
            num = min(num, int(cap))
        r = index.index(ref)
        R = rig.R[r].numpy()
        t = rig.t[r].numpy()
        world28 = (cam_joints[:num] - t) @ R  # R^T (x - t), row vectors
        joints = np.asarray(self.joint_map.apply(world28), dtype=np.float64)
        return {
            "dir": d,
            "subject": subj,
            "sequence": seq,
            "camera_names": [rig.names[v] for v in views],
            "camera_index": [index[v] for v in views],
            "K": rig.K[views].numpy(),
            "R": rig.R[views].numpy(),
            "t": rig.t[views].numpy(),
            "joints": joints,
            "num_frames": num,
        }

    # ------------------------------------------------------------------ indexing
    def __len__(self) -> int:
        return len(self._items)

    @property
    def camera_names(self) -> list[str]:
        return list(self._camera_names)

    @property
    def num_views(self) -> int:
        return len(self._camera_names)

    @property
    def subjects(self) -> list[str]:
        return list(dict.fromkeys(s["subject"] for s in self._sequences))

    @property
    def actions(self) -> list[str]:
        """The sequence names (``"Seq1"``, ``"Seq2"``), the ``action`` of the samples."""
        return list(dict.fromkeys(s["sequence"] for s in self._sequences))

    def info(self, index: int) -> dict:
        k, f = self._items[index]
        s = self._sequences[k]
        return {"subject": s["subject"], "action": s["sequence"], "frame": f}

    def index_of(self, subject: str, sequence: str, frame: int) -> int:
        """Dataset index of ``(subject, sequence, frame)`` (``frame`` 0-based)."""
        if self._lookup is None:
            self._lookup = {
                (self._sequences[k]["subject"], self._sequences[k]["sequence"], f): i
                for i, (k, f) in enumerate(self._items)
            }
        try:
            return self._lookup[(str(subject), str(sequence), int(frame))]
        except KeyError:
            raise KeyError(f"no sample ({subject!r}, {sequence!r}, frame {frame}) in this dataset") from None

    def keypoints_3d(self) -> np.ndarray:
        """Ground truth of every sample ``(N, J, 3)`` float64 world mm (NaN: joint without source)."""
        return np.stack([self._sequences[k]["joints"][f] for k, f in self._items])

    # ------------------------------------------------------------------ frames
    def _read_frame(self, seq: dict, cam_index: int, frame: int) -> np.ndarray:
        base = seq["dir"] / "imageSequence"
        folder, video = base / f"video_{cam_index}", base / f"video_{cam_index}.avi"
        what = f"{seq['subject']} {seq['sequence']} camera {cam_index} frame {frame}"
        use_images = self.frames_source == "images" or (self.frames_source == "auto" and folder.is_dir())
        if use_images:
            return read_rgb(folder / f"img_{frame + 1:06d}.jpg", what)
        if not video.is_file():
            raise FileNotFoundError(
                f"MPI-INF-3DHP frames not found for {what}: neither {folder}/img_%06d.jpg nor {video}"
            )
        cap = cv2.VideoCapture(str(video))
        try:
            if not cap.isOpened():
                raise DatasetError(video, None, "cv2.VideoCapture cannot open the video")
            cap.set(cv2.CAP_PROP_POS_FRAMES, frame)
            ok, image = cap.read()
        finally:
            cap.release()
        if not ok or image is None:
            raise DatasetError(video, None, f"cannot read frame {frame} ({what})")
        return np.ascontiguousarray(image[..., ::-1])

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index = int(index) % len(self)
        k, f = self._items[index]
        seq = self._sequences[k]
        kp = seq["joints"][f]
        valid = self._valid & np.isfinite(kp).all(-1)
        X = torch.from_numpy(np.where(valid[:, None], kp, 0.0))
        K, R, t = seq["K"], seq["R"], seq["t"]
        # crop boxes: the box of the projected joints (in front of the camera), squared and scaled
        Xc = (
            torch.einsum("vij,nj->vni", torch.from_numpy(R), X[torch.from_numpy(valid)])
            + torch.from_numpy(t)[:, None]
        )
        uv = (Xc @ torch.from_numpy(K).transpose(-1, -2))[..., :2] / Xc[..., 2:3]
        front = Xc[..., 2] > 0
        images, boxes = [], np.zeros((len(K), 4), dtype=np.int64)
        for v in range(len(K)):
            if not bool(front[v].any()):
                images.append(None)
                continue
            p = uv[v][front[v]].numpy()
            boxes[v] = square_bbox([*p.min(0), *p.max(0)], self.scale_bbox)
            images.append(self._read_frame(seq, seq["camera_index"][v], f))
        sample = build_views(
            images, boxes, K, R, t, X.numpy(), valid, self.image_size, self.interpolation, self.lt_bgr_quirk
        )
        return {
            "images": sample["images"],
            "keypoints_3d": X.clone(),
            "keypoints_3d_valid": torch.from_numpy(valid.copy()),
            "keypoints_2d": sample["keypoints_2d"],
            "visibility": sample["visibility"],
            "K": sample["K"],
            "R": sample["R"],
            "t": sample["t"],
            "dist": sample["dist"],
            "bbox": sample["bbox"],
            "view_mask": sample["view_mask"],
            "root_3d": X[self.skeleton.root].clone(),
            "subject": seq["subject"],
            "action": seq["sequence"],
            "frame": f,
            "camera_names": list(seq["camera_names"]),
            "index": index,
        }

    def __repr__(self) -> str:
        return (
            f"MPIInf3DHPMultiView(samples={len(self)}, sequences={len(self._sequences)}, "
            f"views={self.camera_names}, skeleton={self.skeleton.name!r}, image_size={self.image_size})"
        )
