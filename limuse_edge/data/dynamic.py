"""Dynamic mixing: a fresh two-speaker mixture for every training item, drawn from a speech pool.

Item `i` of the stream is a pure function of (seed, i): target and interferer voices, their
utterances, crops, SNR, positions, level, face presence and face lag all come from
`np.random.default_rng([seed, i])`. The trainer asks for items by their global index (step x batch
x ranks + offset), so `--resume` continues the very stream it stopped in, and DDP ranks see disjoint
items. The physics and the cues are the corpus builder's own functions (spatial.spatialise / mix,
cues.visual_features on the whole clean utterance, the pool's stored voiceprints), so a dynamic item
is distributed like a corpus line, only never the same twice.

As a board runs it: `no_face_fraction` of the items have no lip track at all, and `face_drop_fraction`
of the others lose it from a random frame to the end (a face that leaves the camera). With
`voiceprint_source="reference"` the voiceprint is another utterance of the target voice, as an
enrolment recorded apart from the mixture is; "target" takes the very utterance being extracted (the
paper's loader). These draws come from a generator of their own, so the mixtures themselves do not
depend on them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset, Sampler

from limuse_edge.data.build import DISTANCE_RANGE_M, MAX_LAG_S, PEAK_RANGE, SNR_RANGE_DB, _face_seed
from limuse_edge.data.cues import visual_features
from limuse_edge.data.pool import VOICEPRINT_FILE, read_pool
from limuse_edge.data.spatial import mix, spatialise
from limuse_edge.data.voiceprint_table import check_voiceprint_source
from limuse_runtime.contract import SAMPLE_RATE, SAMPLES_PER_VIDEO_FRAME, VISUAL_DIM

SILENT_PEAK = 1e-4


@dataclass(frozen=True)
class _Utterance:
    voice: str
    name: str
    wave: np.ndarray  # int16 as stored
    voiceprint: np.ndarray


class DynamicMixDataset(Dataset):
    """Items as MCGridDataset's (mixture (2, S), target (S,), voiceprint, visual, has_face, name), made
    on the fly from the `role` voices of a speech pool. Indexable by any non-negative integer."""

    def __init__(self, pool_dir, segment_seconds: float, seed: int = 0, role: str = "train",
                 no_face_fraction: float = 0.1, face_drop_fraction: float = 0.0,
                 voiceprint_source: str = "target"):
        for name, value in (("no_face_fraction", no_face_fraction), ("face_drop_fraction", face_drop_fraction)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: got {value}; expected a fraction in [0, 1]")
        check_voiceprint_source(voiceprint_source)
        pool = read_pool(pool_dir)
        samples = int(round(segment_seconds * SAMPLE_RATE))
        if samples <= 0 or samples % SAMPLES_PER_VIDEO_FRAME:
            raise ValueError(f"segment_seconds: got {segment_seconds}; expected a positive multiple of 0.04 s "
                             "(one 25 fps video frame)")
        self.segment, self.seed, self.no_face_fraction = samples, seed, no_face_fraction
        self.face_drop_fraction, self.voiceprint_source = face_drop_fraction, voiceprint_source
        voiceprints = np.load(pool.root / VOICEPRINT_FILE, allow_pickle=False)
        self.voices: dict[str, list[_Utterance]] = {}
        for voice, entry in sorted(pool.role(role).items()):
            utts = []
            for utt in sorted(entry["utterances"]):
                path = pool.wav_path(voice, utt)
                wave, rate = sf.read(str(path), dtype="int16")
                if rate != SAMPLE_RATE or wave.ndim != 1:
                    raise ValueError(f"{path}: {rate} Hz, shape {wave.shape}; expected mono {SAMPLE_RATE} Hz")
                if np.abs(wave).max() / 32768 < SILENT_PEAK:
                    continue  # a silent file cannot be a target or an interferer
                utts.append(_Utterance(voice, utt, wave, voiceprints[f"{role}/{voice}/{utt}"]))
            if len(utts) >= 1:
                self.voices[voice] = utts
        if len(self.voices) < 2:
            raise ValueError(f"{pool.root}: {len(self.voices)} {role} voice(s) with non-silent speech; dynamic "
                             f"mixing needs at least 2 (a target and a different interferer)")
        self.names = sorted(self.voices)
        self.faces = {v: _face_seed(seed, v) for v in self.names}

    def __len__(self) -> int:  # the stream is unbounded; a sampler picks the indices
        return 2 ** 62

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, int(index)])
        t_voice, i_voice = rng.choice(len(self.names), size=2, replace=False)
        t_voice, i_voice = self.names[t_voice], self.names[i_voice]
        target = self.voices[t_voice][int(rng.integers(len(self.voices[t_voice])))]
        interferer = self.voices[i_voice][int(rng.integers(len(self.voices[i_voice])))]
        t_wave = target.wave.astype(np.float64) / 32768
        seg, frames = self.segment, self.segment // SAMPLES_PER_VIDEO_FRAME

        face = rng.random() >= self.no_face_fraction
        cue_rng = np.random.default_rng([self.seed, int(index), 1])  # enrolment and face loss, apart
        lag = float(np.clip(rng.normal(0, 0.02), -MAX_LAG_S, MAX_LAG_S))
        start_frame = int(rng.integers(0, max(0, (len(t_wave) - seg) // SAMPLES_PER_VIDEO_FRAME) + 1))
        t_crop = _fit(t_wave[start_frame * SAMPLES_PER_VIDEO_FRAME:], seg)
        if np.abs(t_crop).max() <= SILENT_PEAK:  # a crop inside a pause: the utterance's start has speech
            start_frame, t_crop = 0, _fit(t_wave, seg)
        i_wave = interferer.wave.astype(np.float64) / 32768
        i_crop = _fit(i_wave[int(rng.integers(0, max(0, len(i_wave) - seg) + 1)):], seg)
        if np.abs(i_crop).max() <= SILENT_PEAK:
            i_crop = _fit(i_wave, seg)
        # lip features of the whole utterance, then cropped, as the corpus and its loader do
        visual = (_fit_frames(visual_features(t_wave, self.faces[t_voice], lag, rng=rng)[start_frame:], frames)
                  if face else np.zeros((frames, VISUAL_DIM), np.float32))
        mixture, t_image, _ = mix(
            spatialise(t_crop, float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(*DISTANCE_RANGE_M))),
            spatialise(i_crop, float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(*DISTANCE_RANGE_M))),
            float(rng.uniform(*SNR_RANGE_DB)))
        gain = float(rng.uniform(*PEAK_RANGE)) / np.abs(mixture).max()
        if face and cue_rng.random() < self.face_drop_fraction:
            visual = visual.copy()
            visual[int(cue_rng.integers(0, frames)):] = 0.0
        enrolment = self._enrolment(t_voice, target, cue_rng)
        return {
            "mixture": torch.from_numpy((mixture * gain).astype(np.float32)),
            "target": torch.from_numpy((t_image[0] * gain).astype(np.float32)),
            "voiceprint": torch.from_numpy(enrolment.voiceprint.astype(np.float32)),
            "visual": torch.from_numpy(np.ascontiguousarray(visual, dtype=np.float32)),
            "has_face": torch.tensor(face),
            "name": f"{index}_{t_voice}-{target.name}_{i_voice}-{interferer.name}",
            "enrolment": enrolment.name,
        }

    def _enrolment(self, voice: str, target: _Utterance, rng: np.random.Generator) -> _Utterance:
        """The utterance whose voiceprint guides the item: the target itself, or another of its voice
        (the target itself only where the voice has a single usable utterance)."""
        others = [u for u in self.voices[voice] if u.name != target.name]
        if self.voiceprint_source == "target" or not others:
            return target
        return others[int(rng.integers(len(others)))]


def _fit(wave: np.ndarray, n: int) -> np.ndarray:
    return wave[:n] if len(wave) >= n else np.pad(wave, (0, n - len(wave)))


def _fit_frames(visual: np.ndarray, n: int) -> np.ndarray:
    if len(visual) >= n:
        return visual[:n]
    return np.concatenate([visual, np.zeros((n - len(visual), visual.shape[1]), visual.dtype)])


class StreamSampler(Sampler):
    """Global item indices `first, first + 1, ...` of one rank: item k of the stream goes to rank
    k mod world. The trainer sets `first` from the step it resumes at."""

    def __init__(self, first_item: int, n_items: int, rank: int = 0, world: int = 1):
        self.first, self.n, self.rank, self.world = first_item, n_items, rank, world

    def __iter__(self):
        return iter(range(self.first + self.rank, self.first + self.n * self.world, self.world))

    def __len__(self) -> int:
        return self.n
