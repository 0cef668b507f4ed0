import pytest
import torch
from fixture_helpers import fixture_io, materialise_checkpoint

from mvpose.models.official import KINDS, from_official


def test_unknown_kind_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="expected one of"):
        from_official("posenet", tmp_path / "x.pth")
    with pytest.raises(FileNotFoundError, match="x.pth"):
        from_official("videopose3d", tmp_path / "x.pth")
    assert {"lt_algebraic", "lt_volumetric", "contextpose", "videopose3d", "pstmo"} <= set(KINDS)


def test_from_official_videopose3d_matches_fixture(tmp_path):
    ckpt = materialise_checkpoint("videopose3d", tmp_path)
    model = from_official("videopose3d", ckpt)
    io = fixture_io("videopose3d")
    assert not model.training
    with torch.no_grad():
        out = model(torch.from_numpy(io["input_2d_full"]).float())
    torch.testing.assert_close(out, torch.from_numpy(io["output_full"]), atol=1e-5, rtol=1e-5)
