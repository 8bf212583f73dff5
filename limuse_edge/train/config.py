"""Training configuration: one flat YAML file, unknown keys rejected with the list of valid ones."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class TrainConfig:
    preset: str = "limuse_k32"
    model_overrides: dict = field(default_factory=dict)  # ModelConfig fields changed from the preset
    recipe: str = "float"
    init_from: str | None = None  # a float checkpoint to fine-tune from (QAT)
    data: str = "data/corpus"  # a directory in the MC_Grid layout (its valid split validates)
    dynamic_mixing: str | None = None  # a speech pool (make-speech-pool): fresh train mixtures every step
    voiceprint_source: str = "target"  # "reference": enrol from another utterance of the voice, as a board does
    no_face_fraction: float = 0.1  # dynamic mixing: items with no lip track (a board has no face)
    face_drop_fraction: float = 0.0  # dynamic mixing: items with a face that lose it part-way
    segment_seconds: float = 3.0
    batch_size: int = 4
    num_workers: int = 2
    limit_train: int | None = None
    limit_valid: int | None = None
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    epochs: int = 100
    steps_per_epoch: int | None = None  # shorter "epochs" validate and checkpoint more often
    plateau_patience: int = 2
    plateau_factor: float = 0.5
    early_stop_patience: int = 6
    max_minutes: float | None = None  # stop cleanly (checkpoint written) after this wall time
    teacher: str | None = None  # QAT: a float checkpoint of the same preset to distil from (train/distill.py)
    distill_weight: float = 0.0  # weight of -SI-SNR(student, teacher) in the loss
    calibration_batches: int = 8  # QAT: batches to initialise the activation quantizers
    out_dir: str = "runs/limuse_k32_float"
    seed: int = 0
    threads: int | None = None  # torch CPU threads; None keeps torch's default
    log_every: int = 10
    fast: bool = True  # CPU fast path (train/fast_path.py): same loss and gradients within float rounding

    # Keys a --resume may change: they decide how long and how fast the run goes, not what it learns.
    RESUMABLE = ("epochs", "max_minutes", "threads", "num_workers", "log_every", "fast",
                 "early_stop_patience")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ValueError(f"train config: unknown keys {unknown}; valid keys are {valid}")
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: "str | Path") -> "TrainConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"train config: no such file {str(path)!r}; expected a YAML file")
        d = yaml.safe_load(path.read_text()) or {}
        if not isinstance(d, dict):
            raise ValueError(f"train config: {str(path)!r} must hold a mapping of keys to values")
        return cls.from_dict(d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check_resumes(self, saved: dict, source: str) -> None:
        """Refuses to resume a run whose checkpoint was made under another configuration."""
        mine, defaults = self.to_dict(), TrainConfig().to_dict()
        # a key the saved run predates had its default value there
        differ = {k: (saved.get(k, defaults[k]), mine[k]) for k in mine
                  if k not in self.RESUMABLE and saved.get(k, defaults[k]) != mine[k]}
        if differ:
            raise ValueError(f"--resume: {source} was trained with another configuration (saved vs now: "
                             f"{differ}); expected the same config, changing only {list(self.RESUMABLE)}")
