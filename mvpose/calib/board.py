"""Calibration boards: parse a board spec, detect its corners in images, videos and image folders.

Board specs (``--board``), counts are **squares**, not inner corners, for both kinds:

* ``checkerboard:COLSxROWS:SQUARE_MM``, e.g. ``checkerboard:10x7:25`` (9x6 inner corners, 25 mm squares);
* ``charuco:COLSxROWS:SQUARE_MM:MARKER_MM:DICT[:legacy]``, e.g. ``charuco:7x5:40:30:DICT_4X4_50``
  (``DICT`` is an OpenCV ArUco dictionary, with or without the ``DICT_`` prefix; ``legacy`` selects
  OpenCV's pre-4.6 ChArUco layout for boards printed from old versions).

Board frame (mm): corner ``id = j * (COLS - 1) + i`` lies at ``((i + 1) s, (j + 1) s, 0)`` with ``s`` the
square size, x along the COLS direction, z into the board (away from a camera facing its printed side),
as OpenCV's ``CharucoBoard.getChessboardCorners``. Checkerboard detections are put in a canonical order
(right-handed in the image, then the first inner square dark) so that every camera numbers the corners
alike; that is unambiguous only when ``COLS + ROWS`` is odd and ``COLS != ROWS``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "BoardSpec",
    "Detection",
    "CameraDetections",
    "CalibrateError",
    "BoardNotFoundError",
    "parse_board",
    "detect_board",
    "frame_indices",
    "iter_video_frames",
    "detect_in_images",
    "detect_in_video",
    "list_image_folders",
    "list_videos",
    "IMAGE_SUFFIXES",
    "CHECKERBOARD_METHODS",
    "VIDEO_SUFFIXES",
]

logger = logging.getLogger("mvpose.calib")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".m4v", ".webm", ".wmv")

#: checkerboard detectors of :func:`detect_board`
CHECKERBOARD_METHODS = ("classic", "sb", "classic+sb")
#: Fewest corners a view must show to be used (a homography needs 4; calibration wants more).
MIN_CORNERS = 6


class CalibrateError(ValueError):
    """Calibration from board recordings cannot proceed; the message says which camera and why."""


class BoardNotFoundError(CalibrateError):
    """The board was not found in any frame of a camera."""


# ------------------------------------------------------------------------------------------ board spec
@dataclass(frozen=True)
class BoardSpec:
    """A planar calibration board.

    Args:
        kind: ``"checkerboard"`` or ``"charuco"``.
        cols, rows: number of squares along x and y (inner corners: ``cols - 1`` by ``rows - 1``).
        square_mm: side of a square in mm.
        marker_mm: ArUco marker side in mm (ChArUco only).
        dictionary: OpenCV ArUco dictionary name such as ``"DICT_4X4_50"`` (ChArUco only).
        legacy: OpenCV's pre-4.6 ChArUco layout (ChArUco only).
    """

    kind: str
    cols: int
    rows: int
    square_mm: float
    marker_mm: float | None = None
    dictionary: str | None = None
    legacy: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("checkerboard", "charuco"):
            raise ValueError(f"board: unknown kind {self.kind!r}; expected 'checkerboard' or 'charuco'")
        if self.cols < 3 or self.rows < 3:
            raise ValueError(
                f"board: {self.cols}x{self.rows} squares is too small; COLSxROWS counts squares, "
                "at least 3x3 (2x2 inner corners)"
            )
        if not self.square_mm > 0:
            raise ValueError(f"board: square size must be a positive number of mm, got {self.square_mm}")
        if self.kind == "charuco":
            if self.marker_mm is None or not 0 < self.marker_mm < self.square_mm:
                raise ValueError(
                    f"board: ChArUco marker size must be positive and smaller than the square "
                    f"({self.square_mm} mm), got {self.marker_mm}"
                )
            _dictionary(self.dictionary)

    @property
    def inner_corners(self) -> tuple[int, int]:
        """``(cols - 1, rows - 1)``: the inner-corner grid (OpenCV's ``patternSize``)."""
        return self.cols - 1, self.rows - 1

    @property
    def num_corners(self) -> int:
        return (self.cols - 1) * (self.rows - 1)

    @property
    def object_points_mm(self) -> np.ndarray:
        """Corner positions ``(num_corners, 3)`` mm in the board frame, indexed by corner id."""
        nx, ny = self.inner_corners
        j, i = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        pts = np.stack([(i.ravel() + 1) * self.square_mm, (j.ravel() + 1) * self.square_mm], -1)
        return np.concatenate([pts, np.zeros((len(pts), 1))], -1).astype(np.float64)

    @property
    def orientation_ambiguous(self) -> bool:
        """True for checkerboards whose corner numbering cannot be told apart under rotation."""
        return self.kind == "checkerboard" and ((self.cols + self.rows) % 2 == 0 or self.cols == self.rows)

    def describe(self) -> str:
        nx, ny = self.inner_corners
        if self.kind == "checkerboard":
            return (
                f"checkerboard {self.cols}x{self.rows} squares ({nx}x{ny} inner corners), "
                f"square {self.square_mm:g} mm"
            )
        return (
            f"charuco {self.cols}x{self.rows} squares ({nx}x{ny} inner corners), square "
            f"{self.square_mm:g} mm, marker {self.marker_mm:g} mm, {self.dictionary}"
            + (" (legacy layout)" if self.legacy else "")
        )

    def spec(self) -> str:
        """The spec string that :func:`parse_board` reads back."""
        if self.kind == "checkerboard":
            return f"checkerboard:{self.cols}x{self.rows}:{self.square_mm:g}"
        return f"charuco:{self.cols}x{self.rows}:{self.square_mm:g}:{self.marker_mm:g}:{self.dictionary}" + (
            ":legacy" if self.legacy else ""
        )

    def opencv_board(self):
        """The ``cv2.aruco.CharucoBoard`` of a ChArUco spec (sizes in mm)."""
        import cv2

        if self.kind != "charuco":
            raise ValueError("opencv_board: only ChArUco boards have an OpenCV board object")
        board = cv2.aruco.CharucoBoard(
            (self.cols, self.rows), float(self.square_mm), float(self.marker_mm), _dictionary(self.dictionary)
        )
        board.setLegacyPattern(bool(self.legacy))
        return board


_SPEC_HELP = (
    "expected 'checkerboard:COLSxROWS:SQUARE_MM' or 'charuco:COLSxROWS:SQUARE_MM:MARKER_MM:DICT[:legacy]' "
    "(COLSxROWS counts squares), e.g. 'checkerboard:10x7:25' or 'charuco:7x5:40:30:DICT_4X4_50'"
)


def _dictionary(name):
    import cv2

    key = str(name or "").upper()
    if key and not key.startswith("DICT_"):
        key = "DICT_" + key
    code = getattr(cv2.aruco, key, None) if key else None
    if not isinstance(code, int):
        known = sorted(n for n in dir(cv2.aruco) if n.startswith("DICT_") and n == n.upper())
        raise ValueError(f"board: unknown ArUco dictionary {name!r}; known: {', '.join(known)}")
    return cv2.aruco.getPredefinedDictionary(code)


def parse_board(spec: str | BoardSpec) -> BoardSpec:
    """Parse a board spec string (see the module docstring); a :class:`BoardSpec` passes through."""
    if isinstance(spec, BoardSpec):
        return spec
    parts = [p.strip() for p in str(spec).split(":")]
    kind = parts[0].lower()
    m = re.fullmatch(r"(\d+)\s*[xX]\s*(\d+)", parts[1]) if len(parts) > 1 else None
    if kind not in ("checkerboard", "chessboard", "charuco") or m is None:
        raise ValueError(f"board spec {spec!r}: {_SPEC_HELP}")
    cols, rows = int(m.group(1)), int(m.group(2))
    try:
        sizes = [float(p) for p in parts[2 : 3 if kind != "charuco" else 4]]
    except ValueError:
        raise ValueError(f"board spec {spec!r}: sizes must be numbers of mm; {_SPEC_HELP}") from None
    if kind in ("checkerboard", "chessboard"):
        if len(parts) != 3:
            raise ValueError(f"board spec {spec!r}: {_SPEC_HELP}")
        return BoardSpec("checkerboard", cols, rows, sizes[0])
    if len(parts) not in (5, 6) or (len(parts) == 6 and parts[5].lower() != "legacy"):
        raise ValueError(f"board spec {spec!r}: {_SPEC_HELP}")
    _dictionary(parts[4])
    name = parts[4].upper() if parts[4].upper().startswith("DICT_") else "DICT_" + parts[4].upper()
    return BoardSpec("charuco", cols, rows, sizes[0], sizes[1], name, legacy=len(parts) == 6)


# ------------------------------------------------------------------------------------------ detection
@dataclass(frozen=True)
class Detection:
    """Board corners found in one image: ``ids (N,)`` int and ``corners_px (N, 2)`` float64 pixels."""

    ids: np.ndarray
    corners_px: np.ndarray


@dataclass
class CameraDetections:
    """All detections of one camera.

    ``frames`` holds the frame index (time) of each detection; ``tried`` counts the frames searched;
    ``image_size`` is ``(width, height)`` px; ``source`` names the folder or video.
    """

    name: str
    image_size: tuple[int, int]
    frames: list[int] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)
    tried: int = 0
    source: str = ""

    def by_frame(self) -> dict[int, Detection]:
        return dict(zip(self.frames, self.detections, strict=True))


def _gray(image: np.ndarray) -> np.ndarray:
    import cv2

    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    if img.dtype != np.uint8:
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return img


def _sample(gray: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Mean intensity of a 3x3 px patch around each point ``(N, 2)``."""
    import cv2

    return np.array([cv2.getRectSubPix(gray, (3, 3), (float(x), float(y))).mean() for x, y in pts])


def _canonical_checkerboard(gray: np.ndarray, corners: np.ndarray, nx: int, ny: int) -> np.ndarray:
    """Reorder checkerboard corners ``(nx * ny, 2)`` to the canonical numbering (see module doc)."""
    grid = corners.reshape(ny, nx, 2)
    ex, ey = grid[0, 1] - grid[0, 0], grid[1, 0] - grid[0, 0]
    if ex[0] * ey[1] - ex[1] * ey[0] < 0:  # left-handed numbering in the image: flip y
        grid = grid[::-1]
    cells = (grid[:-1, :-1] + grid[:-1, 1:] + grid[1:, :-1] + grid[1:, 1:]) / 4  # (ny-1, nx-1, 2)
    parity = (np.arange(ny - 1)[:, None] + np.arange(nx - 1)[None, :]) % 2 == 0
    values = _sample(gray, cells.reshape(-1, 2)).reshape(ny - 1, nx - 1)
    # cells of even parity must be the dark ones; if brighter, rotate the numbering by 180 degrees
    if values[parity].mean() > values[~parity].mean():
        grid = grid[::-1, ::-1]
    return np.ascontiguousarray(grid.reshape(-1, 2))


def _subpix_window(corners: np.ndarray, nx: int) -> tuple[int, int]:
    """Half-size of the ``cornerSubPix`` window: about a third of the smallest corner spacing, 2-11 px."""
    c = corners.reshape(-1, nx, 2)
    gaps = [np.linalg.norm(np.diff(c, axis=1), axis=-1), np.linalg.norm(np.diff(c, axis=0), axis=-1)]
    step = min(float(g.min()) for g in gaps if g.size)
    half = int(np.clip(step / 3, 2, 11))
    return half, half


def detect_board(
    image: np.ndarray, board: BoardSpec, *, charuco_detector=None, checkerboard_method: str = "classic"
) -> Detection | None:
    """Find the board's corners in one image (grey or BGR ``(H, W[, C])``); ``None`` if not found.

    Checkerboards (the full grid must be visible): ``checkerboard_method`` ``"classic"``
    (``cv2.findChessboardCorners`` + ``cornerSubPix``: a few ms when the board is there, tens of ms
    when not), ``"sb"`` (``cv2.findChessboardCornersSB``: more robust to blur and noise, 0.1-1 s per
    VGA frame) or ``"classic+sb"`` (SB only where classic fails). ChArUco:
    ``cv2.aruco.CharucoDetector`` (partial views are fine); at least :data:`MIN_CORNERS`
    non-collinear corners are required.
    """
    import cv2

    gray = _gray(image)
    if board.kind == "checkerboard":
        if checkerboard_method not in CHECKERBOARD_METHODS:
            raise ValueError(
                f"checkerboard_method must be one of {CHECKERBOARD_METHODS}, got {checkerboard_method!r}"
            )
        nx, ny = board.inner_corners
        ok = False
        if checkerboard_method != "sb":
            flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
            ok, corners = cv2.findChessboardCorners(gray, (nx, ny), flags=flags)
            if ok:
                criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-3)
                corners = cv2.cornerSubPix(gray, corners, _subpix_window(corners, nx), (-1, -1), criteria)
        if not ok and checkerboard_method != "classic":
            ok, corners = cv2.findChessboardCornersSB(gray, (nx, ny), flags=cv2.CALIB_CB_NORMALIZE_IMAGE)
        if not ok:
            return None
        pts = _canonical_checkerboard(gray, corners.reshape(-1, 2).astype(np.float64), nx, ny)
        return Detection(np.arange(board.num_corners), pts)
    detector = charuco_detector or cv2.aruco.CharucoDetector(board.opencv_board())
    corners, ids, _, _ = detector.detectBoard(gray)
    if ids is None or len(ids) < MIN_CORNERS:
        return None
    ids = ids.reshape(-1).astype(np.int64)
    if detector.getBoard().checkCharucoCornersCollinear(ids.astype(np.int32)):
        return None
    order = np.argsort(ids)
    return Detection(ids[order], corners.reshape(-1, 2).astype(np.float64)[order])


# ------------------------------------------------------------------------------------------ frame sources
def frame_indices(num_frames: int, every: int = 1, max_frames: int | None = None) -> np.ndarray:
    """Indices of the frames to search: every ``every``-th of ``num_frames``, then at most ``max_frames``
    spread evenly over the recording. Cameras with the same frame count get the same indices (time)."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    idx = np.arange(0, max(int(num_frames), 0), every)
    if max_frames is not None and len(idx) > max_frames:
        idx = idx[np.unique(np.round(np.linspace(0, len(idx) - 1, max_frames)).astype(int))]
    return idx


def iter_video_frames(path, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Decode the frames ``indices`` (ascending) of a video in one sequential pass (skips by ``grab``)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise CalibrateError(f"video '{path}': cannot be opened by OpenCV")
    try:
        wanted = sorted(int(i) for i in indices)
        pos = 0
        for target in wanted:
            while pos < target:
                if not cap.grab():
                    return
                pos += 1
            ok, frame = cap.read()
            pos += 1
            if not ok:
                return
            yield target, frame
    finally:
        cap.release()


def _check_size(name, source, size, shape) -> tuple[int, int]:
    wh = (int(shape[1]), int(shape[0]))
    if size is not None and wh != size:
        raise CalibrateError(
            f"camera {name!r}: {source} is {wh[0]}x{wh[1]} px while the camera's earlier frames are "
            f"{size[0]}x{size[1]}; one camera must keep one image size"
        )
    return wh


def _detect_frames(name: str, frames, board: BoardSpec, source: str, method: str) -> CameraDetections:
    import cv2

    detector = cv2.aruco.CharucoDetector(board.opencv_board()) if board.kind == "charuco" else None
    size, out = None, CameraDetections(name, (0, 0), source=source)
    for index, label, image in frames:
        size = _check_size(name, label, size, image.shape)
        out.tried += 1
        det = detect_board(image, board, charuco_detector=detector, checkerboard_method=method)
        if det is not None:
            out.frames.append(int(index))
            out.detections.append(det)
    if size is None:
        raise CalibrateError(f"camera {name!r}: no frames to search in {source}")
    out.image_size = size
    logger.info("camera %s: board found in %d of %d frames (%s)", name, len(out.frames), out.tried, source)
    return out


def detect_in_images(
    name: str,
    paths: Sequence[Path],
    board: BoardSpec,
    *,
    every: int = 1,
    max_frames: int | None = None,
    num_frames: int | None = None,
    checkerboard_method: str = "classic",
) -> CameraDetections:
    """Detect the board in image files; the frame index of ``paths[k]`` is ``k`` (sorted order = time).

    ``num_frames`` (default ``len(paths)``) sets the frame grid, as in :func:`detect_in_video`;
    ``checkerboard_method`` as in :func:`detect_board`.
    """
    import cv2

    paths = [Path(p) for p in paths]
    grid = frame_indices(len(paths) if num_frames is None else num_frames, every, max_frames)

    def frames():
        for k in grid[grid < len(paths)]:
            image = cv2.imread(str(paths[k]), cv2.IMREAD_GRAYSCALE)
            if image is None:
                raise CalibrateError(f"camera {name!r}: image '{paths[k]}' cannot be read")
            yield int(k), f"image '{paths[k]}'", image

    source = str(paths[0].parent) if paths else "(no images)"
    return _detect_frames(name, frames(), board, source, checkerboard_method)


def detect_in_video(
    name: str,
    path,
    board: BoardSpec,
    *,
    every: int = 1,
    max_frames: int | None = None,
    num_frames: int | None = None,
    checkerboard_method: str = "classic",
) -> CameraDetections:
    """Detect the board in frames of a video (every ``every``-th, at most ``max_frames``).

    ``num_frames`` overrides the frame count the container reports (give all cameras the same count
    so that they sample the same instants).
    """
    if num_frames is None:
        num_frames = video_frame_count(path)
    idx = frame_indices(num_frames, every, max_frames)
    if not len(idx):
        raise CalibrateError(f"camera {name!r}: video '{path}' has no frames")
    frames = ((i, f"frame {i} of video '{path}'", img) for i, img in iter_video_frames(path, idx))
    return _detect_frames(name, frames, board, f"video '{path}'", checkerboard_method)


def video_frame_count(path) -> int:
    """Number of frames of a video: the container's count, or decoded one by one when it reports none."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise CalibrateError(f"video '{path}': cannot be opened by OpenCV")
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if n <= 0:
            n = 0
            while cap.grab():
                n += 1
    finally:
        cap.release()
    return n


def list_image_folders(root) -> dict[str, list[Path]]:
    """``{camera: sorted image paths}`` of a folder holding one sub-folder of images per camera."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"--images '{root}': not a folder (expected one sub-folder per camera)")
    cams = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        imgs = sorted(p for p in sub.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if imgs:
            cams[sub.name] = imgs
        else:
            logger.warning("%s: no images (%s), skipped", sub, ", ".join(IMAGE_SUFFIXES))
    if not cams:
        raise CalibrateError(
            f"--images '{root}': no camera sub-folders with images ({', '.join(IMAGE_SUFFIXES)}); expected "
            "DIR/<camera>/<frame>.png"
        )
    return cams


def list_videos(root) -> dict[str, Path]:
    """``{camera: video}`` of a folder holding one video per camera (file stem = camera name)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"--videos '{root}': not a folder (expected one video per camera)")
    vids = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not vids:
        raise CalibrateError(f"--videos '{root}': no videos ({', '.join(VIDEO_SUFFIXES)})")
    stems = [p.stem for p in vids]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise CalibrateError(f"--videos '{root}': several videos per camera name {dup}; keep one per camera")
    return {p.stem: p for p in vids}
