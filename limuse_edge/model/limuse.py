"""LiMuSE: encoder -> cue encoders -> audio stage -> fusion stage -> mask -> decoder."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from limuse_edge.config import ModelConfig
from limuse_runtime.contract import (MIXTURE, SAMPLES_PER_VIDEO_FRAME, VISUAL, VISUAL_DIM, VOICEPRINT,
                                     VOICEPRINT_DIM, n_video_frames)
from limuse_edge.model import layers as factory
from limuse_edge.model.blocks import GCTCN, ContextCodec
from limuse_edge.quant import QuantRecipe, get_recipe

_MASK_ACTIVATIONS = {"none": nn.Identity, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}


def _stage(cfg: ModelConfig, dim: int, hidden: int, layers: int, stacks: int, context_hidden: int,
           recipe: QuantRecipe) -> nn.Module:
    main = GCTCN(dim, hidden, layers, stacks, cfg.groups, cfg.kernel_size, recipe, grouped=cfg.grouped,
                 causal=cfg.causal)
    if not cfg.context_codec:
        return main
    return ContextCodec(dim, context_hidden, cfg.context_size, cfg.context_layers, cfg.groups,
                        cfg.kernel_size, main, recipe)


class LiMuSE(nn.Module):
    """forward(mixture (B, C, S), voiceprint (B, 512), visual (B, V, 256)) -> target (B, S)."""

    def __init__(self, config: ModelConfig, recipe: "QuantRecipe | str" = "float"):
        super().__init__()
        self.config = cfg = config
        self.recipe = recipe = get_recipe(recipe)
        n = cfg.n_filters
        self.encoder = factory.conv1d(recipe, cfg.mic_channels, n, cfg.filter_length, stride=cfg.hop, edge=True)
        if "voiceprint" in cfg.cues:
            self.voiceprint_encoder = factory.conv1d(recipe, VOICEPRINT_DIM, n, 1)
        if "visual" in cfg.cues:
            self.visual_encoder = factory.linear(recipe, VISUAL_DIM, n)
        self.norm = factory.norm(recipe, n, causal=cfg.causal)  # gLN (cLN when causal)
        self.audio_stage = _stage(cfg, n, cfg.audio_hidden, cfg.audio_layers, cfg.audio_stacks,
                                  cfg.context_hidden, recipe)
        self.fusion_stage = _stage(cfg, cfg.fusion_dim, cfg.fusion_hidden, cfg.fusion_layers,
                                   cfg.fusion_stacks, cfg.fusion_context_hidden, recipe)
        self.mask = factory.conv1d(recipe, cfg.fusion_dim, n, 1, edge=True)
        self.mask_activation = _MASK_ACTIVATIONS[cfg.mask_activation]()
        self.decoder = nn.ConvTranspose1d(n, 1, cfg.filter_length, stride=cfg.hop)

    def get_model_args(self) -> dict:
        return {"config": self.config.to_dict(), "recipe": self.recipe.to_dict()}

    def forward(self, mixture: torch.Tensor, voiceprint: torch.Tensor | None = None,
                visual: torch.Tensor | None = None) -> torch.Tensor:
        self.check_inputs(mixture, voiceprint, visual)
        cfg = self.config
        n_samples = mixture.shape[-1]
        # Pad the tail so the frames tile the input exactly and the decoder returns every sample.
        pad = (cfg.hop - (n_samples - cfg.filter_length) % cfg.hop) % cfg.hop
        mix_frames = self.encoder(F.pad(mixture, (0, pad)))  # (B, N, T)
        b, n, t = mix_frames.shape

        streams = [self.audio_stage(self.norm(mix_frames))]
        if voiceprint is not None:
            vp = self.voiceprint_encoder(voiceprint.unsqueeze(-1)).expand(b, n, t)
            streams.append(self.norm(vp))
        if visual is not None:
            vis = self.visual_encoder(visual).transpose(1, 2)  # (B, N, V)
            if cfg.causal:
                vis = vis.index_select(2, causal_video_index(cfg, t, vis.shape[2]).to(vis.device))
            else:
                vis = F.interpolate(vis, size=t, mode="linear", align_corners=False)
            streams.append(self.norm(vis))
        # Channel m*c + i is channel c of stream i, so every contiguous group sees every modality.
        fused = torch.stack(streams, 2).reshape(b, len(streams) * n, t)
        fused = self.fusion_stage(fused)

        mask = self.mask_activation(self.mask(fused))
        return self.decoder(mix_frames * mask)[:, 0, :n_samples]

    def check_inputs(self, mixture, voiceprint, visual) -> None:
        cfg = self.config
        if mixture.dim() != 3 or mixture.shape[1] != cfg.mic_channels:
            raise ValueError(f"mixture: got shape {tuple(mixture.shape)}; "
                             f"expected (batch, {cfg.mic_channels}, samples)")
        if mixture.shape[2] < cfg.filter_length:
            raise ValueError(f"mixture: got {mixture.shape[2]} samples; expected at least "
                             f"{cfg.filter_length} (one encoder filter)")
        b = mixture.shape[0]
        for name, tensor, dim, rank_desc in (("voiceprint", voiceprint, VOICEPRINT_DIM, f"({b}, {VOICEPRINT_DIM})"),
                                             ("visual", visual, VISUAL_DIM, f"({b}, frames, {VISUAL_DIM})")):
            wanted = name in cfg.cues
            if tensor is None:
                if wanted:
                    raise ValueError(f"{name}: missing; this model expects a {name} of shape {rank_desc}")
                continue
            if not wanted:
                raise ValueError(f"{name}: this model has no {name} cue (cues: {list(cfg.cues)}); "
                                 f"pass {name}=None")
            rank = 2 if name == "voiceprint" else 3
            if tensor.dim() != rank or tensor.shape[0] != b or tensor.shape[-1] != dim or tensor.shape[1] < 1:
                raise ValueError(f"{name}: got shape {tuple(tensor.shape)}; expected {rank_desc}")


def causal_video_index(cfg: ModelConfig, n_frames: int, n_video: int) -> torch.Tensor:
    """The video frame each of `n_frames` audio frames takes in the causal model: the latest one started
    by the audio frame's last sample (video frame k covers samples 640k .. 640k + 639, the contract's),
    held past the last one given. Nothing comes from a later video frame, and the choice depends on
    absolute time only, not on the input's length (a stream picks the same frames)."""
    last_sample = torch.arange(n_frames) * cfg.hop + cfg.filter_length - 1
    return torch.div(last_sample, SAMPLES_PER_VIDEO_FRAME, rounding_mode="floor").clamp_max(n_video - 1)


def model_inputs(model: LiMuSE, batch: dict, device) -> tuple:
    """The batch tensors the model takes, in forward's order; an absent cue is passed as None (the
    adapter from a data loader's batch dict to forward, for the trainer and evaluate)."""
    cues = model.config.cues
    return (batch["mixture"].to(device),
            batch["voiceprint"].to(device) if "voiceprint" in cues else None,
            batch["visual"].to(device) if "visual" in cues else None)


def example_inputs(model: LiMuSE, n_samples: int, seed: int = 0, batch: int = 1, *, scale: float = 0.1,
                   video_frames: int | None = None, cues=None) -> dict[str, torch.Tensor]:
    """Random inputs of the contract's shapes, {input name: tensor}: `n_samples` audio samples (normal,
    times `scale`) and `video_frames` 25 fps frames (default: those of n_samples), drawn in the contract's
    order from one generator seeded with `seed`. `cues`: the cue inputs to draw (default: the model's)."""
    cfg = model.config
    cues = cfg.cues if cues is None else cues
    gen = torch.Generator().manual_seed(seed)
    inputs = {MIXTURE: scale * torch.randn(batch, cfg.mic_channels, n_samples, generator=gen)}
    if VOICEPRINT in cues:
        inputs[VOICEPRINT] = torch.randn(batch, VOICEPRINT_DIM, generator=gen)
    if VISUAL in cues:
        frames = n_video_frames(n_samples) if video_frames is None else video_frames
        inputs[VISUAL] = torch.randn(batch, frames, VISUAL_DIM, generator=gen)
    return inputs
