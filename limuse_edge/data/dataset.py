"""A torch Dataset over any directory in the MC_Grid layout, and its DataLoader.

Training (`segment_seconds` set): a random crop per call, starting on a video-frame boundary so that
the lip features (25 fps, 640 samples per frame) stay aligned with the audio. Evaluation (None): whole
utterances. Crops are drawn from a numpy generator seeded by `seed` and, inside a DataLoader worker,
by the worker's torch seed, so they differ between workers and epochs yet repeat under torch.manual_seed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from limuse_edge.data import layout
from limuse_edge.data.voiceprint_table import check_voiceprint_source, read_voiceprint_table
from limuse_runtime.contract import SAMPLE_RATE, SAMPLES_PER_VIDEO_FRAME, VISUAL_DIM, VOICEPRINT_DIM, n_video_frames
_FRAME_SLACK = 2  # lip tracks a frame or two longer or shorter than the audio are trimmed or padded


def _read_audio(path: Path, what: str) -> np.ndarray:
    """(S, C) float32 at 16 kHz."""
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read {what} audio ({exc}); expected a 16 kHz wav") from None
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: {what} at {rate} Hz; expected {SAMPLE_RATE} Hz")
    return audio


class MCGridDataset(Dataset):
    def __init__(self, root: "str | Path", split: str = "train", segment_seconds: float | None = None,
                 voiceprint_source: str = "target", seed: int = 0, limit: int | None = None, channels: int = 2):
        self.root = Path(root)
        if not self.root.is_dir():
            raise NotADirectoryError(f"{self.root}: corpus root not found; expected an MC_Grid directory")
        check_voiceprint_source(voiceprint_source)
        self.split, self.channels, self.seed = split, channels, seed
        self.lines = layout.read_list(self.root, split)[:limit]
        list_file = layout.list_path(self.root, split)
        if not self.lines:
            raise ValueError(f"{list_file}: no samples; expected one line per mixture")
        self.segment = None
        if segment_seconds is not None:
            samples = int(round(segment_seconds * SAMPLE_RATE))
            if samples <= 0 or samples % SAMPLES_PER_VIDEO_FRAME:
                raise ValueError(f"segment_seconds: got {segment_seconds}; expected a positive multiple of 0.04 s "
                                 "(one 25 fps video frame), e.g. 2.0")
            self.segment = samples

        for number, line in enumerate(self.lines, start=1):
            for what, rel in (("mixture", line.mixture), ("target", line.target)):
                if not (self.root / rel).is_file():
                    raise FileNotFoundError(f"{list_file}:{number}: {what} file {self.root / rel} not found")
        self.keys = [line.voiceprint_key if voiceprint_source == "target" else line.reference_key
                     for line in self.lines]
        self.voiceprints = self._load_voiceprints(list_file)
        self._rng, self._rng_key = None, None

    def _load_voiceprints(self, list_file: Path) -> dict[str, np.ndarray]:
        path = self.root / layout.VOICEPRINT_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: voiceprint file not found; expected grid_vp.pkl in the corpus root")
        table = read_voiceprint_table(path)
        needed = {}
        for number, key in enumerate(self.keys, start=1):
            if key not in table:
                raise KeyError(f"{list_file}:{number}: voiceprint key {key!r} not in {path}")
            vector = np.asarray(table[key], dtype=np.float32).reshape(-1)
            if vector.shape != (VOICEPRINT_DIM,):
                raise ValueError(f"{path}: voiceprint {key!r} has {vector.size} values; expected {VOICEPRINT_DIM}")
            needed[key] = vector
        return needed

    def __len__(self) -> int:
        return len(self.lines)

    def _generator(self) -> np.random.Generator:
        info = get_worker_info()
        key = None if info is None else info.seed
        if self._rng is None or key != self._rng_key:
            self._rng = np.random.default_rng([self.seed, 0 if key is None else key % 2 ** 63])
            self._rng_key = key
        return self._rng

    def _visual(self, line: layout.ListLine, n_frames: int) -> tuple[np.ndarray, bool]:
        path = self.root / line.lip
        if not path.is_file():  # no face track in this utterance
            return np.zeros((n_frames, VISUAL_DIM), np.float32), False
        try:
            visual = np.load(path).astype(np.float32)
        except Exception as exc:
            raise ValueError(f"{path}: cannot read lip features ({exc}); expected a .npy array") from None
        if visual.ndim != 2 or visual.shape[1] != VISUAL_DIM or abs(len(visual) - n_frames) > _FRAME_SLACK:
            raise ValueError(f"{path}: lip features of shape {visual.shape}; expected ({n_frames}, {VISUAL_DIM})")
        if len(visual) < n_frames:
            visual = np.concatenate([visual, np.repeat(visual[-1:], n_frames - len(visual), axis=0)])
        return visual[:n_frames], True

    def __getitem__(self, index: int) -> dict:
        line = self.lines[index]
        mixture = _read_audio(self.root / line.mixture, "mixture")
        if mixture.shape[1] != self.channels:
            raise ValueError(f"{self.root / line.mixture}: mixture has {mixture.shape[1]} channel(s); "
                             f"expected {self.channels}")
        target = _read_audio(self.root / line.target, "target")[:, 0]
        if len(target) != len(mixture):
            raise ValueError(f"{self.root / line.target}: {len(target)} samples; expected {len(mixture)} "
                             "like its mixture")
        n_frames = n_video_frames(len(mixture))
        visual, has_face = self._visual(line, n_frames)
        if self.segment is not None:
            mixture, target, visual = self._crop(mixture, target, visual)
        return {
            "mixture": torch.from_numpy(np.ascontiguousarray(mixture.T)),
            "target": torch.from_numpy(np.ascontiguousarray(target)),
            "voiceprint": torch.from_numpy(self.voiceprints[self.keys[index]].copy()),
            "visual": torch.from_numpy(visual),
            "has_face": torch.tensor(has_face),
            "name": Path(line.mixture).stem,
        }

    def _crop(self, mixture, target, visual):
        seg, seg_frames = self.segment, self.segment // SAMPLES_PER_VIDEO_FRAME
        if len(mixture) < seg:  # short utterance: pad with silence (and no face) at the end
            pad = seg - len(mixture)
            mixture = np.pad(mixture, ((0, pad), (0, 0)))
            target = np.pad(target, (0, pad))
        if len(visual) < seg_frames:
            visual = np.pad(visual, ((0, seg_frames - len(visual)), (0, 0)))
        last_start = min(len(mixture) - seg, (len(visual) - seg_frames) * SAMPLES_PER_VIDEO_FRAME) // SAMPLES_PER_VIDEO_FRAME
        frame = int(self._generator().integers(0, last_start + 1))
        start = frame * SAMPLES_PER_VIDEO_FRAME
        return mixture[start:start + seg], target[start:start + seg], visual[frame:frame + seg_frames]


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int = 0,
                drop_last: bool = False) -> DataLoader:
    """A DataLoader with the default collate (all items of a split have equal lengths)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      drop_last=drop_last, persistent_workers=num_workers > 0)
