"""V2V network: reference layout, published size, variants."""

from __future__ import annotations

import pytest
import torch
from fixture_helpers import fixture_config, fixture_dir
from torch import nn

from mvpose.models.v2v import Basic3DBlock, EncoderDecoder, Res3DBlock, V2VModel

NAME = "learnable_triangulation_vol"


def _manifest() -> list:
    import json

    return json.loads((fixture_dir(NAME) / "manifest.json").read_text())["tensors"]


def test_state_dict_matches_reference_layout():
    with torch.device("meta"):
        net = V2VModel(32, 17)
    ref = {n[len("volume_net.") :]: tuple(s) for n, s, _ in _manifest() if n.startswith("volume_net.")}
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert ours == ref


def test_published_parameter_count():
    parts = fixture_config(NAME)["published_param_counts"]["volumetric_parts"]
    with torch.device("meta"):
        net = V2VModel(32, 17)
    assert sum(p.numel() for p in net.parameters()) == parts["volume_net"] == 11_944_353


def test_shapes_and_divisibility():
    net = V2VModel(4, 3, encoder_decoder=EncoderDecoder((32, 8, 8)), back_layers=nn.Sequential()).eval()
    assert net(torch.randn(2, 4, 8, 4, 12)).shape == (2, 3, 8, 4, 12)
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 4, 6, 8, 8))


class _MidWithExtras(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.res = Res3DBlock(c, c)

    def forward(self, x):
        return self.res(x), {"attention": x.mean(1)}


def test_variant_with_block_in_the_bottleneck():
    """ContextPose-like: another front, 2 levels, a custom mid block that returns extras."""
    net = V2VModel(
        32,
        17,
        front_layers=nn.Sequential(Basic3DBlock(32, 17, 3), Res3DBlock(17, 34)),
        encoder_decoder=EncoderDecoder((34, 51, 51), mid=_MidWithExtras(51)),
        back_layers=nn.Sequential(),
    ).eval()
    keys = net.state_dict().keys()
    assert "encoder_decoder.mid_res.res.res_branch.0.weight" in keys
    assert "encoder_decoder.decoder_upsample1.block.0.weight" in keys
    assert net.output_layer.weight.shape == (17, 34, 1, 1, 1)
    with torch.no_grad():
        out, extras = net(torch.randn(1, 32, 8, 8, 8))
    assert out.shape == (1, 17, 8, 8, 8) and extras["attention"].shape == (1, 2, 2, 2)


# Parity of the V2V with the reference (fixture intermediates -> volumes, keypoints) is in
# tests/test_models_volumetric.py::test_v2v_parity_from_fixture_intermediates, which shares the
# materialised checkpoint with the whole-model tests.
