"""Learning curves: history.jsonl parsing (resumed steps keep their last value) and the PNG."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from mvpose.engine.curves import plot_learning_curves, read_history


def _history(path, rows):
    path.mkdir(parents=True, exist_ok=True)
    (path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_read_history_and_plot(tmp_path):
    rows = [{"tag": "train", "step": s, "mpjpe_mm": 300.0 - s} for s in range(1, 11)]
    rows += [{"tag": "train", "step": 5, "mpjpe_mm": 1.0}]  # a resumed run rewrote step 5
    rows += [{"tag": "val", "step": 10, "MPJPE": 120.0}]
    _history(tmp_path / "a", rows)
    h = read_history(tmp_path / "a")
    assert h["train"]["step"].tolist() == list(range(1, 11))
    assert h["train"]["mpjpe_mm"][4] == 1.0 and h["val"]["MPJPE"].tolist() == [120.0]
    out = plot_learning_curves({"a": tmp_path / "a"}, tmp_path / "c.png")
    img = cv2.imread(str(out))
    assert img is not None and img.shape[0] > 100 and np.ptp(img) > 0


def test_bad_history_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="history.jsonl"):
        read_history(tmp_path)
    (tmp_path / "history.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match="line 1"):
        read_history(tmp_path)
