"""Writing picture sequences (MP4 with OpenCV's ``mp4v``, GIF with Pillow, or numbered PNGs) and
reading chosen frames of a video."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from mvpose.viz.images import write_png

__all__ = ["VideoWriter", "read_frames", "video_info", "gif_available", "VIDEO_SUFFIXES"]

logger = logging.getLogger(__name__)

#: suffixes :func:`read_frames` and ``mvpose viz --videos`` take as videos
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def gif_available() -> bool:
    """Whether Pillow (which writes GIFs) is installed."""
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return False
    return True


class VideoWriter:
    """Frames in, one file (or folder) out; the format comes from ``path``.

    * ``*.mp4`` / ``*.avi``: OpenCV ``VideoWriter`` with the ``mp4v`` codec (odd sizes are padded
      to even ones, which MPEG-4 needs);
    * ``*.gif``: Pillow, looping (``ValueError`` if Pillow is missing);
    * anything else is a folder of ``frame_000000.png`` ... (``names`` can give the numbers).

    Every frame must have the size of the first. Use as a context manager; ``close()`` returns the
    path and raises if nothing was written.

    Example:
        >>> with VideoWriter("/tmp/x.mp4", fps=25) as w:  # doctest: +SKIP
        ...     w.write(np.zeros((64, 64, 3), np.uint8))
    """

    def __init__(self, path, fps: float = 30.0) -> None:
        self.path = Path(path)
        if not fps > 0:
            raise ValueError(f"video '{self.path}': fps must be > 0, got {fps}")
        self.fps = float(fps)
        suffix = self.path.suffix.lower()
        self.kind = (
            "mp4" if suffix in (".mp4", ".avi", ".m4v", ".mov") else "gif" if suffix == ".gif" else "png"
        )
        if self.kind == "gif" and not gif_available():
            raise ValueError(
                f"video '{self.path}': GIF needs Pillow (pip install pillow); write .mp4 instead"
            )
        self.count = 0
        self._size: tuple[int, int] | None = None
        self._writer = None
        self._gif: list = []

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._writer is not None:
            self._writer.release()

    def write(self, frame_rgb: np.ndarray, number: int | None = None) -> None:
        """Append one uint8 RGB ``(H, W, 3)`` frame (``number`` names a PNG frame)."""
        img = np.asarray(frame_rgb)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[-1] != 3:
            raise ValueError(
                f"video '{self.path}': frames must be uint8 (H, W, 3), got {img.dtype} {img.shape}"
            )
        size = (img.shape[1], img.shape[0])
        if self._size is None:
            self._size = size
            self._open()
        elif size != self._size:
            raise ValueError(
                f"video '{self.path}': frame {self.count} is {size[0]}x{size[1]}, the first was "
                f"{self._size[0]}x{self._size[1]}"
            )
        if self.kind == "mp4":
            h, w = img.shape[:2]
            if h % 2 or w % 2:
                img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            self._writer.write(np.ascontiguousarray(img[..., ::-1]))
        elif self.kind == "gif":
            from PIL import Image

            self._gif.append(Image.fromarray(img).quantize(colors=255, method=Image.Quantize.MEDIANCUT))
        else:
            write_png(self.path / f"frame_{self.count if number is None else int(number):06d}.png", img)
        self.count += 1

    def _open(self) -> None:
        if self.kind == "png":
            self.path.mkdir(parents=True, exist_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.kind == "mp4":
            w, h = self._size[0] + self._size[0] % 2, self._size[1] + self._size[1] % 2
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                raise OSError(f"video '{self.path}': OpenCV cannot open an mp4v writer ({w}x{h})")

    def close(self) -> Path:
        """Finish the file; returns its path."""
        if self.count == 0:
            raise ValueError(f"video '{self.path}': no frames were written")
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._gif:
            ms = max(20, int(round(1000 / self.fps / 10)) * 10)  # GIF delays are in 1/100 s
            self._gif[0].save(self.path, save_all=True, append_images=self._gif[1:], duration=ms, loop=0)
            self._gif = []
        return self.path


def video_info(path) -> dict:
    """``{"frames", "fps", "width", "height"}`` of a video, from its header (``ValueError`` if unreadable)."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError(f"video '{path}': OpenCV cannot open it")
        return {
            "frames": int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
            "fps": float(cap.get(cv2.CAP_PROP_FPS)),
            "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        }
    finally:
        cap.release()


def read_frames(path, numbers: Sequence[int]) -> Iterator[tuple[int, np.ndarray | None]]:
    """Yield ``(number, frame)`` for the frame numbers asked (ascending, 0-based), frame uint8 RGB.

    Frames are decoded in order from the start (exact for every codec; frames before the first
    one asked are only grabbed, not converted). A frame past the end of the video yields ``None``
    (logged once).
    """
    wanted = sorted({int(n) for n in numbers})
    if wanted and wanted[0] < 0:
        raise ValueError(f"video '{path}': negative frame number {wanted[0]}")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"video '{path}': OpenCV cannot open it")
    try:
        pos, ended, warned = 0, False, False
        for n in wanted:
            while not ended and pos < n:
                ended = not cap.grab()
                pos += 1
            frame = None
            if not ended:
                ok, bgr = cap.read()
                pos += 1
                if ok:
                    frame = np.ascontiguousarray(bgr[..., ::-1])
                else:
                    ended = True
            if frame is None and not warned:
                logger.warning("video '%s' ends before frame %d: blank frames from there on", path, n)
                warned = True
            yield n, frame
    finally:
        cap.release()
