"""Real utterances for the export's parity checks and demo run: the bundled demo sample
(limuse_edge/assets/demo, made by export/make_demo_sample.py) and, when a corpus is at hand, more
utterances from its test split."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import numpy as np
import soundfile as sf

from limuse_runtime.contract import MIXTURE, SAMPLE_RATE, VISUAL, VISUAL_DIM, VOICEPRINT, VOICEPRINT_DIM, n_video_frames

DEMO_DIR = Path(str(files("limuse_edge"))) / "assets" / "demo"


@dataclass
class Utterance:
    name: str
    mixture: np.ndarray  # (C, S) float32
    target: np.ndarray  # (S,) float32
    voiceprint: np.ndarray  # (512,) float32
    visual: np.ndarray  # (V, 256) float32
    info: dict = field(default_factory=dict)

    def inputs(self, cues: tuple[str, ...], channels: int) -> dict[str, np.ndarray]:
        """Batch-1 model inputs for a model with `cues` and `channels` microphones."""
        if self.mixture.shape[0] < channels:
            raise ValueError(f"{self.name}: {self.mixture.shape[0]} channel(s); the model expects {channels}")
        inputs = {MIXTURE: self.mixture[None, :channels]}
        if VOICEPRINT in cues:
            inputs[VOICEPRINT] = self.voiceprint[None]
        if VISUAL in cues:
            inputs[VISUAL] = self.visual[None]
        return inputs

    def same_samples(self, other: "Utterance") -> bool:
        """The same model inputs (a head() that kept everything has another name, not other samples)."""
        return all(a.shape == b.shape and np.array_equal(a, b) for a, b in (
            (self.mixture, other.mixture), (self.voiceprint, other.voiceprint), (self.visual, other.visual)))

    def head(self, n_samples: int) -> "Utterance":
        """The first `n_samples` samples and their video frames (25 fps, rounded up)."""
        if n_samples > self.target.shape[-1]:
            raise ValueError(f"{self.name}: {self.target.shape[-1]} samples; cannot take the first {n_samples}")
        return Utterance(f"{self.name}[:{n_samples}]", self.mixture[:, :n_samples], self.target[:n_samples],
                         self.voiceprint, self.visual[:n_video_frames(n_samples)], self.info)


def _audio(path: Path) -> np.ndarray:
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: sample rate {rate} Hz; expected {SAMPLE_RATE}")
    return data.T


def load_demo(folder: "str | Path" = DEMO_DIR) -> Utterance:
    folder = Path(folder)
    needed = ["mixture.wav", "target.wav", "voiceprint.npy", "visual.npy", "demo.json"]
    missing = [n for n in needed if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"demo sample: {folder} lacks {missing}; expected the files written by "
                                f"export/make_demo_sample.py")
    utterance = Utterance("demo", _audio(folder / "mixture.wav"), _audio(folder / "target.wav")[0],
                          np.load(folder / "voiceprint.npy").astype(np.float32),
                          np.load(folder / "visual.npy").astype(np.float32),
                          json.loads((folder / "demo.json").read_text()))
    if utterance.voiceprint.shape != (VOICEPRINT_DIM,) or utterance.visual.ndim != 2 \
            or utterance.visual.shape[1] != VISUAL_DIM:
        raise ValueError(f"demo sample: voiceprint {utterance.voiceprint.shape}, visual {utterance.visual.shape}; "
                         f"expected ({VOICEPRINT_DIM},) and (frames, {VISUAL_DIM})")
    return utterance


def corpus_utterances(root: "str | Path", count: int, split: str = "test") -> list[Utterance]:
    """The first `count` utterances of a corpus split (MC_Grid layout)."""
    from limuse_edge.data.dataset import MCGridDataset
    dataset = MCGridDataset(root, split, limit=count)
    items = [dataset[i] for i in range(len(dataset))]
    return [Utterance(item["name"], item["mixture"].numpy(), item["target"].numpy(),
                      item["voiceprint"].numpy(), item["visual"].numpy(), {"corpus": str(root), "split": split})
            for item in items]
