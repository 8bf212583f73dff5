"""Model configuration: a plain dataclass that round-trips through dicts and YAML, plus the presets."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

CUES = ("voiceprint", "visual")
MASK_ACTIVATIONS = ("none", "relu", "sigmoid")


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of one LiMuSE network (spec: ../shared/spec/limuse.md)."""

    n_filters: int = 128  # N
    filter_length: int = 32  # L, stride L/2
    mic_channels: int = 2  # C
    audio_hidden: int = 512  # H of the audio main block (4N)
    audio_layers: int = 6
    audio_stacks: int = 2
    fusion_layers: int = 6
    fusion_stacks: int = 1
    kernel_size: int = 3  # P
    groups: int = 32  # K
    grouped: bool = True  # group communication with TAC; False is the plain TCN of the "raw" rows
    context_codec: bool = True
    context_size: int = 32
    context_hidden: int = 256  # H of the audio context encoder/decoder; fusion uses m times this
    context_layers: int = 2
    cues: tuple[str, ...] = CUES
    mask_activation: str = "none"  # the published config names sigmoid but never applies it
    causal: bool = False  # cumulative norms, left-padded main GC-TCN, past-only visual cue (docs/causal.md)

    def __post_init__(self):
        object.__setattr__(self, "cues", tuple(self.cues))
        unknown = [c for c in self.cues if c not in CUES]
        if unknown:
            raise ValueError(f"cues: unknown {unknown}; expected a subset of {list(CUES)}")
        if self.mask_activation not in MASK_ACTIVATIONS:
            raise ValueError(f"mask_activation: got {self.mask_activation!r}; expected one of {list(MASK_ACTIVATIONS)}")
        if self.filter_length % 2:
            raise ValueError(f"filter_length: got {self.filter_length}; expected an even number (stride is L/2)")
        if self.grouped:
            widths = {"n_filters": self.n_filters, "audio_hidden": self.audio_hidden,
                      "fusion_hidden": self.fusion_hidden}
            if self.context_codec:
                widths["context_hidden"] = self.context_hidden
            bad = {k: v for k, v in widths.items() if v % self.groups}
            if bad:
                raise ValueError(f"groups: {self.groups} must divide every grouped width; got {bad}")
        if self.context_codec and self.context_size % 2:
            raise ValueError(f"context_size: got {self.context_size}; expected an even number (hop is half)")

    @property
    def n_streams(self) -> int:
        """m: audio plus one stream per cue."""
        return 1 + len(self.cues)

    @property
    def fusion_dim(self) -> int:
        return self.n_streams * self.n_filters

    @property
    def fusion_hidden(self) -> int:
        return self.n_streams * self.audio_hidden

    @property
    def fusion_context_hidden(self) -> int:
        return self.n_streams * self.context_hidden

    @property
    def hop(self) -> int:
        return self.filter_length // 2

    def n_frames(self, n_samples: int) -> int:
        return (n_samples - self.filter_length) // self.hop + 1

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["cues"] = list(self.cues)
        if not self.causal:  # an offline config's dict as before the field: packed models embed it
            del d["causal"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - valid)
        if unknown:
            raise ValueError(f"model config: unknown keys {unknown}; valid keys are {sorted(valid)}")
        return cls(**d)

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_yaml(cls, path: str | Path) -> "ModelConfig":
        return cls.from_dict(yaml.safe_load(Path(path).read_text()) or {})

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


_K32 = ModelConfig()
_K16 = ModelConfig(groups=16)
_RAW = ModelConfig(filter_length=16, grouped=False, context_codec=False, groups=1)

PRESETS: dict[str, ModelConfig] = {
    "limuse_k32": _K32,
    "limuse_k16": _K16,
    "no_cc_k32": _K32.replace(context_codec=False),
    "no_cc_k16": _K16.replace(context_codec=False),
    "no_vp_k32": _K32.replace(cues=("visual",)),
    "no_vp_k16": _K16.replace(cues=("visual",)),
    "no_vis_k32": _K32.replace(cues=("voiceprint",)),
    "no_vis_k16": _K16.replace(cues=("voiceprint",)),
    "raw_2ch": _RAW,
    "raw_1ch": _RAW.replace(mic_channels=1),
    # Every code path of limuse_k32 (groups, TAC, both codecs, both cues) at a size unit tests can afford.
    "tiny": ModelConfig(n_filters=16, filter_length=16, audio_hidden=32, audio_layers=2, audio_stacks=1,
                        fusion_layers=2, groups=4, context_size=8, context_hidden=16),
}


# The causal twin of every row above (docs/causal.md): the same parameters, so it starts from the row's
# float bundle.
PRESETS.update({f"{name}_causal": cfg.replace(causal=True) for name, cfg in list(PRESETS.items())})

# Each ContextCodec stage's output frame depends on the frames of the 50 %-overlapping blocks that hold it;
# LiMuSE runs two such stages (audio, then fusion) in a row.
CODEC_STAGES = 2


def algorithmic_latency_samples(config: ModelConfig) -> int:
    """The algorithmic latency of a causal model in samples: output sample s is final once input samples
    up to s + latency - 1 have arrived (and visual frames up to that sample's), and some s needs exactly
    that many. Offline (causal=False) models have none: their norms see the whole input.

    Derivation, with L = filter_length, h = hop = L/2 and, with the context codec, c = context_size/2
    frames (the blocks' hop):
    - Decoder: sample s is the overlap-add of frames floor(s/h) - 1 and floor(s/h); the later one counts.
    - Encoder: frame i reads samples i*h .. i*h + L - 1.
    - Codec stage: split_blocks pads c frames on the left, so block j holds frames j*c - c .. j*c + c - 1
      and frame f lies in blocks floor(f/c) and floor(f/c) + 1. A block's encoder, summary and decoder see
      their whole block (local norms), the main GC-TCN over the block sequence is causal, so output frame
      f depends on input frames up to F(f) = (floor(f/c) + 2)*c - 1.
    - Two stages in a row: F(F(f)) = (floor(f/c) + 3)*c - 1, a look-ahead of 3c - 1 frames at f = q*c.
    - At s = q*c*h: the latest input sample is ((q + 3)*c - 1)*h + L - 1, that is s + (3c - 1)*h + L - 1.
    So the latency is (3c - 1)*h + L samples; without the codec every stage is frame-causal and it is the
    encoder window L. The visual cue (latest video frame started by an audio frame's last sample) adds
    nothing. limuse_k32_causal: L = 32, h = 16, c = 16: 47*16 + 32 = 784 samples, 49 ms at 16 kHz (one
    block of 32 frames alone would be 33 ms: (2c - 1)*h + L = 528 samples; the second stage adds c*h)."""
    if not config.causal:
        raise ValueError("latency: an offline model (causal: false) has no algorithmic latency (its norms "
                         "see the whole input); expected a causal config, e.g. preset 'limuse_k32_causal'")
    if not config.context_codec:
        return config.filter_length
    look_ahead_frames = (CODEC_STAGES + 1) * (config.context_size // 2) - 1
    return look_ahead_frames * config.hop + config.filter_length


def algorithmic_latency_seconds(config: ModelConfig, sample_rate: int = 16000) -> float:
    """algorithmic_latency_samples in seconds at `sample_rate` (the contract's 16 kHz)."""
    return algorithmic_latency_samples(config) / sample_rate


def get_preset(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"preset: unknown {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]
