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


def get_preset(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"preset: unknown {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]
