"""The MC_Grid directory layout: list files, the ten fields of a list line, file names, voiceprint keys.

```
root/{mixture,target,ref,lip_fea}/{train,valid,test}/...   root/grid_vp.pkl   root/datalist_2mix_{split}.txt
```
A list line: mixture wav (2 ch), target wav, reference wav, lip .npy, target azimuth, target distance,
interferer azimuth, interferer distance, target gender, interferer gender, e.g.
`mixture/test/0_RIR0_s16_lgak6a_s12_pbbb6a_mix.wav target/test/0_RIR0_s16_lgak6a_target.wav
ref/test/s16/swwn7n.wav lip_fea/test/s16/lgak6a.npy 5.03 3.93 4.43 3.03 f m`.
Speaker and utterance names contain no '_' and no whitespace: the published loader splits file names
on '_' to find the voiceprint key.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "valid", "test")
VOICEPRINT_FILE = "grid_vp.pkl"


def list_path(root: "str | Path", split: str) -> Path:
    if split not in SPLITS:
        raise ValueError(f"split: got {split!r}; expected one of {list(SPLITS)}")
    return Path(root) / f"datalist_2mix_{split}.txt"


def safe_name(name: str) -> str:
    """A speaker or utterance name usable in MC_Grid file names ('_' and odd characters become '-')."""
    cleaned = re.sub(r"[^A-Za-z0-9.\-]+", "-", name).strip("-")
    if not cleaned:
        raise ValueError(f"name {name!r} has no usable characters (letters, digits, '.', '-')")
    return cleaned


@dataclass(frozen=True)
class ListLine:
    mixture: str
    target: str
    reference: str
    lip: str
    target_azimuth: float
    target_distance: float
    interferer_azimuth: float
    interferer_distance: float
    target_gender: str
    interferer_gender: str

    def to_text(self) -> str:
        return " ".join([self.mixture, self.target, self.reference, self.lip,
                         repr(self.target_azimuth), repr(self.target_distance),
                         repr(self.interferer_azimuth), repr(self.interferer_distance),
                         self.target_gender, self.interferer_gender])

    @classmethod
    def parse(cls, text: str, where: str) -> "ListLine":
        fields = text.split()
        if len(fields) != 10:
            raise ValueError(f"{where}: {len(fields)} fields; expected 10 (mixture target ref lip "
                             "target_az target_dist interf_az interf_dist target_gender interf_gender)")
        try:
            numbers = [float(f) for f in fields[4:8]]
        except ValueError:
            raise ValueError(f"{where}: azimuths and distances (fields 5-8) must be numbers; "
                             f"got {fields[4:8]}") from None
        return cls(*fields[:4], *numbers, *fields[8:])

    @property
    def voiceprint_key(self) -> str:
        """The published loader's key: the target utterance's own '<speaker>_<utterance>.wav'."""
        parts = Path(self.target).name.split("_")
        if len(parts) < 4:
            raise ValueError(f"target file name {Path(self.target).name!r}: expected "
                             "'<index>_<rir>_<speaker>_<utterance>_target.wav'")
        return "_".join(parts[2:4]) + ".wav"

    @property
    def reference_key(self) -> str:
        """Key of the reference (enrolment) utterance ref/<split>/<speaker>/<utterance>.wav."""
        path = Path(self.reference)
        return f"{path.parent.name}_{path.stem}.wav"


def read_list(root: "str | Path", split: str) -> list[ListLine]:
    path = list_path(root, split)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: list file not found; expected an MC_Grid corpus directory "
                                f"with datalist_2mix_{{train,valid,test}}.txt")
    lines = []
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        if text.strip():
            lines.append(ListLine.parse(text, f"{path}:{number}"))
    return lines


def mixture_path(split, index, t_spk, t_utt, i_spk, i_utt) -> str:
    return f"mixture/{split}/{index}_RIR0_{t_spk}_{t_utt}_{i_spk}_{i_utt}_mix.wav"


def target_path(split, index, t_spk, t_utt) -> str:
    return f"target/{split}/{index}_RIR0_{t_spk}_{t_utt}_target.wav"


def reference_path(split, spk, utt) -> str:
    return f"ref/{split}/{spk}/{utt}.wav"


def lip_path(split, spk, utt) -> str:
    return f"lip_fea/{split}/{spk}/{utt}.npy"


def voiceprint_key(spk: str, utt: str) -> str:
    return f"{spk}_{utt}.wav"
