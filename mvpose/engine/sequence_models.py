"""Temporal models in the engine: builders from the config, training windows, the training forward and
loss, whole-sequence prediction with test-time flips (:class:`SequenceTask`).

Units inside the task are the references': 2D inputs in VideoPose3D's normalised screen coordinates,
3D inputs and all targets in **metres**, root-relative (the root joint's row set to 0); predictions
are returned in metres and the engine converts to mm for scoring.

How each model sees a sequence:

=============  ==========================================  ==============================================
model          training                                    evaluation
=============  ==========================================  ==============================================
videopose3d,   windows of ``rf + chunk - 1`` frames ->     the whole edge-padded sequence in one pass
srnet          ``chunk`` centre frames (the strided        (``T + rf - 1`` frames -> ``T``)
               ``TemporalModelOptimized1f`` twin when
               ``chunk = 1``)
poseformerv2,  ``F``-frame windows -> the centre frame     a window around every frame (edge-padded)
pstmo          (P-STMO: + its full-sequence head)
pstmo_pretrain ``F``-frame windows, masked -> all frames   reconstruction error with fixed masks
tgraphnet      ``in_frames`` windows -> every frame        windows of ``in_frames``; the centre
               (``chunk`` centre targets + context)         ``eval_chunk`` frames of each are kept
=============  ==========================================  ==============================================

Refinement (3D input): with ``model.residual`` the network's output is added to the input pose of the
frames it predicts (a correction); flips mirror x of the root-relative 3D input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from mvpose.data.sequences.windows import WindowDataset, flip_average, pad_sequence
from mvpose.engine.sequence_config import SequenceExperimentConfig
from mvpose.engine.sequence_data import Clip, SequenceData
from mvpose.skeleton import Skeleton

__all__ = [
    "build_temporal_model",
    "receptive_field",
    "SequenceTask",
    "TrainForward",
    "load_pretrained_encoder",
]

#: whether the reference scores with the predicted root set to 0 (P-STMO and TGraphNet do)
_ZERO_ROOT = {"videopose3d": False, "srnet": False, "poseformerv2": False, "pstmo": True, "tgraphnet": True}


def receptive_field(cfg: SequenceExperimentConfig) -> int:
    """Input frames per output frame (the window the model needs)."""
    m = cfg.model
    if m.kind == "videopose3d":
        return math.prod(m.videopose3d.filter_widths)
    if m.kind == "srnet":
        return m.srnet.filter_widths[0] ** len(m.srnet.filter_widths)
    if m.kind == "poseformerv2":
        return m.poseformerv2.number_of_frames
    if m.kind == "tgraphnet":
        return m.tgraphnet.in_frames
    return m.pstmo.frames


def _uniform(name: str, values: Sequence[int]) -> int:
    if len(set(values)) != 1:
        raise ValueError(f"model.tgraphnet.{name}={list(values)}: one value for every level is supported")
    return int(values[0])


def load_pretrained_encoder(path: str | Path, model: nn.Module) -> list[str]:
    """P-STMO stage I -> II: copy the encoder of an mvpose ``pstmo_pretrain`` checkpoint (or a reference
    ``Model_MAE`` state dict) into ``model`` (:func:`mvpose.models.temporal.pstmo.transfer_pretrained`)."""
    from mvpose.engine.checkpoint import FORMAT
    from mvpose.models.temporal.pstmo import transfer_pretrained

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.pretrained: checkpoint not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and state.get("format") == FORMAT:
        kind = (state.get("config") or {}).get("model", {}).get("kind")
        if kind != "pstmo_pretrain":
            raise ValueError(f"model.pretrained: {path} is a {kind!r} checkpoint, not pstmo_pretrain")
        return transfer_pretrained(state["model"], model)
    return transfer_pretrained(path, model)


def build_temporal_model(cfg: SequenceExperimentConfig, in_features: int, skeleton: Skeleton) -> nn.Module:
    """The config's temporal model (``model.kind`` and its section), for ``in_features`` (2 or 3) and
    the joints of ``skeleton``; initialised from ``official_checkpoint`` / ``pretrained`` when given."""
    m = cfg.model
    J = skeleton.num_joints
    if m.official_checkpoint:
        from mvpose.models import from_official

        if m.kind == "pstmo_pretrain":
            return from_official("pstmo", m.official_checkpoint, pretrain=True)
        return from_official(m.kind, m.official_checkpoint)
    if m.kind == "videopose3d":
        from mvpose.models.temporal.videopose3d import TemporalModel

        c = m.videopose3d
        return TemporalModel(J, in_features, J, c.filter_widths, c.causal, c.dropout, c.channels, c.dense)
    if m.kind == "srnet":
        from mvpose.models.temporal.srnet import SRNet

        c = m.srnet
        return SRNet(
            skeleton,
            in_features,
            c.filter_widths,
            c.causal,
            c.dropout,
            c.channels,
            c.group,
            c.recombine,
            c.norm,
        )
    if m.kind == "poseformerv2":
        from mvpose.models.temporal.poseformerv2 import PoseFormerV2

        c = m.poseformerv2
        return PoseFormerV2(
            num_frame=c.number_of_frames,
            num_joints=J,
            in_chans=in_features,
            embed_dim_ratio=c.embed_dim_ratio,
            depth=c.depth,
            num_heads=c.num_heads,
            mlp_ratio=c.mlp_ratio,
            qkv_bias=c.qkv_bias,
            qk_scale=c.qk_scale,
            frames_kept=c.number_of_kept_frames,
            coeffs_kept=c.number_of_kept_coeffs,
            drop_rate=c.dropout,
            drop_path_rate=c.drop_path_rate,
        )
    if m.kind == "tgraphnet":
        from mvpose.models.temporal.tgraphnet import TGraphNet

        c = m.tgraphnet
        pools = [w for w in c.tcn_window[: len(c.num_hidden_nodes) - 1]]
        return TGraphNet(
            in_features=in_features,
            channels=[int(h[1]) for h in c.num_hidden_nodes],
            blocks=c.gconv_stages,
            num_groups=c.num_groups,
            window=_uniform("gcn_window", c.gcn_window),
            pool=_uniform("tcn_window", pools),
            in_frames=c.in_frames,
            dropout=c.dropout,
            skeleton=skeleton,
        )
    from mvpose.models.temporal.pstmo import PSTMO, PSTMOPretrain

    c = m.pstmo
    common = dict(
        frames=c.frames,
        layers=c.layers,
        channel=c.channel,
        d_hid=c.d_hid,
        n_joints=J,
        out_joints=J,
        in_channels=in_features,
        num_heads=c.transformer_heads,
        dropout=c.dropout,
    )
    if m.kind == "pstmo_pretrain":
        return PSTMOPretrain(
            **common,
            temporal_mask_rate=c.temporal_mask_rate,
            spatial_mask_num=c.spatial_mask_num,
            dec_dim_shrink=c.dec_dim_shrink,
            decoder_layers=c.decoder_layers,
        )
    net = PSTMO(**common, stride_num=c.stride_num)
    if m.pretrained:
        load_pretrained_encoder(m.pretrained, net)
    return net


class TrainForward(nn.Module):
    """The training forward of a temporal model as one ``nn.Module`` (what DDP wraps): returns
    ``{"out": (B, n, J, C)}`` and, for P-STMO, ``{"seq": (B, F, J, 3)}``. It shares the model's
    parameters (VideoPose3D's strided twin included)."""

    def __init__(self, kind: str, net: nn.Module, strided_srnet: bool = False):
        super().__init__()
        self.kind, self.net, self.strided_srnet = kind, net, strided_srnet

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if self.kind == "pstmo":
            centre, seq = self.net.forward_with_sequence(x)
            return {"out": centre, "seq": seq}
        if self.kind == "srnet" and self.strided_srnet:
            self.net.strided = True
            try:
                return {"out": self.net(x)}
            finally:
                self.net.strided = False
        return {"out": self.net(x)}


def _output_layer(kind: str, model: nn.Module) -> nn.Module:
    """The layer that writes the poses (the refiner's correction) of each model."""
    if kind == "videopose3d":
        return model.shrink
    if kind == "srnet":
        return model.final_layer.group_conv
    if kind == "poseformerv2":
        return model.head[-1]
    if kind == "pstmo":
        return nn.ModuleList([model.head_centre[-1], model.head_seq[-1]])
    if kind == "tgraphnet":
        return nn.ModuleList([model.post_node, model.post_traj])
    raise ValueError(f"{kind} is not a refiner")


def _mpjpe(a: Tensor, b: Tensor) -> Tensor:
    return (a - b).norm(dim=-1).mean()


class SequenceTask:
    """How a temporal model is trained and run on the clips of :class:`SequenceData` (module doc)."""

    def __init__(self, cfg: SequenceExperimentConfig, data: SequenceData):
        self.cfg, self.kind = cfg, cfg.model.kind
        self.skeleton, self.root = data.skeleton, data.skeleton.root
        self.in_flip, self.out_flip = tuple(data.input_flip), tuple(data.skeleton.flip_indices)
        self.input_dim = data.input_dim
        self.refine = self.input_dim == 3
        self.residual = self.refine and cfg.model.residual and self.kind != "pstmo_pretrain"
        self.rf = receptive_field(cfg)
        if self.rf < 1 or (self.kind != "tgraphnet" and self.rf % 2 == 0):
            raise ValueError(f"model.{self.kind}: the receptive field {self.rf} must be odd")
        self.pad = (self.rf - 1) // 2
        causal = {"videopose3d": cfg.model.videopose3d.causal, "srnet": cfg.model.srnet.causal}.get(
            self.kind, False
        )
        self.shift = self.pad if causal else 0
        self.chunk = cfg.data.chunk_length
        z = cfg.eval.zero_root
        self.zero_root = _ZERO_ROOT.get(self.kind, False) if z is None else z

    # ------------------------------------------------------------------------------ models
    def build(self) -> nn.Module:
        """The model; a refiner's output layer starts at zero, so that it starts as the identity
        (a random head would add metre-sized corrections that training must first undo)."""
        model = build_temporal_model(self.cfg, self.input_dim, self.skeleton)
        if self.residual and not (self.cfg.model.official_checkpoint or self.cfg.model.pretrained):
            with torch.no_grad():
                for p in _output_layer(self.kind, model).parameters():
                    p.zero_()
        return model

    def training_module(self, model: nn.Module) -> TrainForward:
        """The module trained (VideoPose3D's strided twin for single-frame chunks, as ``run.py``)."""
        c = self.cfg.model
        if (
            self.kind == "videopose3d"
            and self.chunk == 1
            and not (c.videopose3d.disable_optimizations or c.videopose3d.dense)
        ):
            from mvpose.models.temporal.videopose3d import TemporalModelOptimized1f

            return TrainForward(self.kind, TemporalModelOptimized1f.from_model(model, share=True))
        strided = self.kind == "srnet" and self.chunk == 1 and not c.srnet.disable_optimizations
        return TrainForward(self.kind, model, strided_srnet=strided)

    # ------------------------------------------------------------------------------ units
    def model_inputs(self, x: np.ndarray, fps: float | None = None) -> np.ndarray:
        """Clip inputs to model units: 2D as is; 3D (optionally pre-filtered, ``model.prefilter_hz``)
        root-relative, in metres."""
        x = np.asarray(x, dtype=np.float64)
        if self.refine:
            m = self.cfg.model
            if m.prefilter_hz > 0:
                from mvpose.engine.sequence_data import robust_lowpass

                x = robust_lowpass(x, fps or 50.0, m.prefilter_hz, m.prefilter_outlier_mm)
            x = (x - x[:, self.root : self.root + 1]) * 1e-3
        return x.astype(np.float32)

    def model_targets(self, y: np.ndarray) -> np.ndarray:
        """Absolute mm targets to root-relative metres (root row 0)."""
        y = np.asarray(y, dtype=np.float64)
        return ((y - y[:, self.root : self.root + 1]) * 1e-3).astype(np.float32)

    # ------------------------------------------------------------------------------ windows
    def _phases(self, clips: list[Clip]) -> list[tuple[int, int, Clip]]:
        """P-STMO's ``t_downsample``: each clip as ``tds`` interleaved sub-sequences."""
        k = self.cfg.data.t_downsample
        return [(i, o, c) for i, c in enumerate(clips) for o in range(min(k, c.num_frames))]

    def _window_geometry(self) -> tuple[int, int]:
        """``(receptive_field, chunk_length)`` of the :class:`WindowDataset` cut for training."""
        if self.kind == "tgraphnet":
            return self.rf - self.chunk + 1, self.chunk
        return self.rf, self.chunk

    def training_windows(self, clips: list[Clip]) -> tuple[WindowDataset, WindowDataset | None]:
        """Training windows (and, for P-STMO and TGraphNet, windows of the targets of every input frame)."""
        k = self.cfg.data.t_downsample
        seqs = self._phases(clips)
        xs = [self.model_inputs(c.inputs, c.fps)[o::k] for _, o, c in seqs]
        ys = (
            None
            if self.kind == "pstmo_pretrain"
            else [self.model_targets(c.target)[o::k] for _, o, c in seqs]
        )
        rf, chunk = self._window_geometry()
        common = dict(
            receptive_field=rf,
            chunk_length=chunk,
            causal_shift=self.shift,
            flip_augment=self.cfg.data.data_augmentation,
            ids=[c.key for _, _, c in seqs],
        )
        main = WindowDataset(xs, ys, flip_indices=self.in_flip, target_flip_indices=self.out_flip, **common)
        full = None
        if self.kind in ("pstmo", "tgraphnet"):
            full = WindowDataset(ys, None, flip_indices=self.out_flip, **common)
        return main, full

    # ------------------------------------------------------------------------------ training
    def _aligned_inputs(self, x: Tensor, n_out: int) -> Tensor:
        """The input frames the ``n_out`` outputs of a window belong to (for the residual)."""
        if self.kind == "tgraphnet":
            return x
        start = self.pad + self.shift
        return x[:, start : start + n_out]

    def loss(self, out: dict[str, Tensor], batch: dict) -> tuple[Tensor, dict[str, float]]:
        x = batch["input"]
        if self.kind == "pstmo_pretrain":
            loss = _mpjpe(out["out"], x)
            return loss, {"total": float(loss.detach()), "reconstruction": float(loss.detach())}
        pred = out["out"]
        if self.residual:
            pred = pred + self._aligned_inputs(x, pred.shape[1])
        if self.kind == "tgraphnet":
            target = batch["target_window"]
            pred = pred.clone()
            pred[:, :, self.root] = 0.0  # the trajectory head is not trained by the root-relative loss
        else:
            target = batch["target"]
        parts = {}
        loss = _mpjpe(pred, target)
        parts["mpjpe"] = float(loss.detach())
        c = self.cfg.loss
        if self.kind == "pstmo" and c.sequence_weight > 0:
            seq = out["seq"] + (x if self.residual else 0.0)
            ls = _mpjpe(seq, batch["target_window"])
            loss = loss + c.sequence_weight * ls
            parts["mpjpe_sequence"] = float(ls.detach())
        if c.velocity_weight > 0 and pred.shape[1] > 1:
            lv = _mpjpe(torch.diff(pred, dim=1), torch.diff(target, dim=1))
            loss = loss + c.velocity_weight * lv
            parts["velocity"] = float(lv.detach())
        parts["total"] = float(loss.detach())
        parts["mpjpe_mm"] = parts["mpjpe"] * 1000.0
        return loss, parts

    # ------------------------------------------------------------------------------ prediction
    def _run(self, model: nn.Module, x: Tensor, tta: bool) -> Tensor:
        if tta:
            return flip_average(model, x, self.in_flip, self.out_flip)
        return model(x)

    @torch.no_grad()
    def predict(
        self, model: nn.Module, inputs: np.ndarray, tta: bool | None = None, fps: float | None = None
    ) -> np.ndarray:
        """Whole-clip prediction ``(T, J, 3)`` metres, root-relative, for clip inputs ``(T, J, D)``
        (model units are applied here), in eval mode; ``tta``: flip averaging (default
        ``eval.test_time_augmentation``)."""
        tta = self.cfg.eval.test_time_augmentation if tta is None else tta
        k = self.cfg.data.t_downsample
        x_all = torch.from_numpy(self.model_inputs(inputs, fps))
        device = next(model.parameters()).device
        out = torch.empty(x_all.shape[0], x_all.shape[1], 3)
        was = model.training
        model.eval()  # dropout off, BatchNorm running statistics
        try:
            for o in range(min(k, x_all.shape[0])):
                out[o::k] = self._predict_one(model, x_all[o::k].to(device), tta).cpu()
        finally:
            model.train(was)
        if self.zero_root:
            out[:, self.root] = 0.0
        return out.numpy().astype(np.float64)

    def _predict_one(self, model: nn.Module, x: Tensor, tta: bool) -> Tensor:
        T = x.shape[0]
        if self.kind in ("videopose3d", "srnet"):
            y = self._run(model, pad_sequence(x, self.pad, self.shift, time_dim=0)[None], tta)[0]
        elif self.kind == "tgraphnet":
            keep = self.cfg.eval.eval_chunk
            c = (self.rf - keep) // 2
            n = -(-T // keep)
            idx = torch.clamp(torch.arange(-c, n * keep + c, device=x.device), 0, T - 1)
            xp = x[idx]
            wins = xp.unfold(0, self.rf, keep).permute(0, 3, 1, 2)  # (n, F, J, D)
            ys = [
                self._run(model, wins[s : s + self._eval_bs()].contiguous(), tta)
                for s in range(0, n, self._eval_bs())
            ]
            y = torch.cat(ys)[:, c : c + keep].reshape(n * keep, *x.shape[1:-1], 3)[:T]
        else:
            xp = pad_sequence(x, self.pad, 0, time_dim=0)
            wins = xp.unfold(0, self.rf, 1).permute(0, 3, 1, 2)  # (T, F, J, D)
            bs = self._eval_bs()
            y = torch.cat(
                [self._run(model, wins[s : s + bs].contiguous(), tta)[:, 0] for s in range(0, T, bs)]
            )
        if self.residual:
            y = y + x
        return y

    def _eval_bs(self) -> int:
        return max(1, self.cfg.eval.batch_size)

    @torch.no_grad()
    def reconstruction_error_px(self, model: nn.Module, clip: Clip, seed: int = 0) -> np.ndarray:
        """P-STMO stage I: per frame, the mean 2D reconstruction error (px) of the window centred on it,
        with masks drawn from ``seed`` (the same for every evaluation)."""
        from mvpose.models.temporal.pstmo import draw_masks

        x = torch.from_numpy(self.model_inputs(clip.inputs))
        device = next(model.parameters()).device
        model.eval()
        xp = pad_sequence(x, self.pad, 0, time_dim=0).to(device)
        wins = xp.unfold(0, self.rf, 1).permute(0, 3, 1, 2)
        g = torch.Generator().manual_seed(seed)
        tm, sm = draw_masks(self.rf, x.shape[1], model.temporal_mask_rate, model.spatial_mask_num, g)
        bs, errs = self._eval_bs(), []
        for s in range(0, wins.shape[0], bs):
            w = wins[s : s + bs].contiguous()
            rec = model(w, tm.to(device), sm.to(device))
            errs.append((rec - w).norm(dim=-1).mean(dim=(1, 2)).cpu())
        scale = (clip.image_width or 2.0) / 2.0  # normalised units -> px (x / w * 2)
        return torch.cat(errs).double().numpy() * scale
