"""The training loop: float pretraining and Brevitas QAT share it; the recipe makes the difference."""
from __future__ import annotations

import itertools
import math
import os
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from limuse_edge import quant
from limuse_edge.checkpoint import (convert_recipe, load_checkpoint, load_state, parent_record, read_checkpoint,
                                    save_checkpoint)
from limuse_edge.config import get_preset
from limuse_edge.model import LiMuSE
from limuse_edge.model.limuse import model_inputs
from limuse_edge.train.config import TrainConfig
from limuse_edge.train.distill import DistillationLoss, check_distillation, file_digest, load_teacher
from limuse_edge.train.fast_path import fast_path
from limuse_runtime.contract import INPUT_NAMES, SAMPLE_RATE
from limuse_runtime.voiceprint import VOICEPRINT_VERSION


def calibration_batches(model: LiMuSE, loader, n_batches: int, device):
    """The first `n_batches` real batches as the model's keyword inputs, for quant.calibrate."""
    return (dict(zip(INPUT_NAMES, model_inputs(model, batch, device))) for batch in itertools.islice(loader, n_batches))


@torch.no_grad()
def validate(model: LiMuSE, loader, device, net=None) -> float:
    """Mean zero-mean SI-SDR (dB) of the estimates of `net` (the model, or its DDP wrapper).
    Under torchrun every rank scores its shard and all get the mean over all of them, so the LR
    schedule and early stopping, which follow this number, stay the same on every rank."""
    from limuse_edge.metrics import si_sdr
    net = model if net is None else net
    net.eval()
    total = torch.zeros(2, dtype=torch.float64)
    for batch in loader:
        scores = si_sdr(net(*model_inputs(model, batch, device)).cpu(), batch["target"])
        total += torch.tensor([float(scores.sum()), len(scores)], dtype=torch.float64)
    net.train()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        total = total.to(device)
        torch.distributed.all_reduce(total)
        total = total.cpu()
    return float(total[0] / max(float(total[1]), 1.0))


class _Distributed:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; without them this is a single process."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if self.world > 1:
            torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device("cuda", self.local_rank)
        else:
            self.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def _stream_loader(dataset, cfg: TrainConfig, dist: _Distributed, step: int, n_steps: int) -> DataLoader:
    """The next `n_steps` batches of a dynamic-mixing stream from `step` on: items are numbered across
    steps and ranks, so a resumed run and every rank draw their own, never-repeated mixtures."""
    from limuse_edge.data.dynamic import StreamSampler
    first = step * cfg.batch_size * dist.world
    return DataLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                      sampler=StreamSampler(first, n_steps * cfg.batch_size, dist.rank, dist.world))


def _loader(dataset, cfg: TrainConfig, dist: _Distributed, train: bool) -> DataLoader:
    from limuse_edge.data import make_loader
    if dist.world == 1:
        return make_loader(dataset, batch_size=cfg.batch_size, shuffle=train, num_workers=cfg.num_workers,
                           drop_last=train)
    sampler = torch.utils.data.distributed.DistributedSampler(dataset, shuffle=train, seed=cfg.seed)
    return DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                      drop_last=train, persistent_workers=cfg.num_workers > 0)


def _build_model(cfg: TrainConfig) -> tuple[LiMuSE, bool]:
    """The model and whether its activation quantizers need calibrating. Not when it starts from a
    quantized checkpoint: calibration would overwrite the scales QAT learned (on the po2 bundle it costs
    12 dB). Quantizers the checkpoint lacks (-inorm's norm inputs) then initialise from the statistics
    of the first training steps, with the rest of the model quantized."""
    model_cfg = get_preset(cfg.preset).replace(**cfg.model_overrides)
    if cfg.init_from:
        saved, ckpt = load_checkpoint(cfg.init_from, config=model_cfg)
        model = convert_recipe(saved, cfg.recipe, source=repr(cfg.init_from))
        from_quantized = quant.QuantRecipe.from_dict(ckpt["model_args"]["recipe"]).quantized
        return model, model.recipe.quantized and not from_quantized
    model = LiMuSE(model_cfg, cfg.recipe)
    return model, model.recipe.quantized


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    """Train to the end of cfg.epochs, early stopping or cfg.max_minutes; returns the history."""
    with fast_path(cfg.fast and not torch.cuda.is_available()):
        return _train(cfg, resume)


def _train(cfg: TrainConfig, resume: bool) -> dict:
    from limuse_edge.data import MCGridDataset
    dist = _Distributed()
    device = dist.device
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + dist.rank)
    out = Path(cfg.out_dir)
    last_path, best_path = out / "last.pt", out / "best.pt"
    if resume and not last_path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint {str(last_path)!r} to resume from; "
                                f"run once without --resume first")

    check_distillation(cfg.teacher, cfg.distill_weight)
    teacher_digest = file_digest(cfg.teacher) if cfg.teacher else None
    ckpt = read_checkpoint(last_path) if resume else None
    if ckpt is not None:  # before any work: a resumed run must be the run it continues
        cfg.check_resumes(ckpt.get("meta", {}).get("train_config", {}), str(last_path))
        saved_digest = ckpt.get("meta", {}).get("teacher_sha256")
        if saved_digest != teacher_digest:
            raise ValueError(f"--resume: the teacher {cfg.teacher!r} is not the file {str(last_path)!r} was "
                             f"trained with (sha256 {saved_digest} then, {teacher_digest} now); expected "
                             "the same teacher checkpoint")
    model, needs_calibration = _build_model(cfg)
    teacher = load_teacher(cfg.teacher, model.config).to(device) if cfg.teacher else None
    loss_fn = DistillationLoss(teacher, cfg.distill_weight)
    if cfg.dynamic_mixing:
        from limuse_edge.data.dynamic import DynamicMixDataset
        if cfg.steps_per_epoch is None:
            raise ValueError("dynamic_mixing: the stream has no end; expected steps_per_epoch to say how many "
                             "steps make an epoch (one validation and checkpoint)")
        train_set = DynamicMixDataset(cfg.dynamic_mixing, cfg.segment_seconds, seed=cfg.seed,
                                      no_face_fraction=cfg.no_face_fraction,
                                      face_drop_fraction=cfg.face_drop_fraction,
                                      voiceprint_source=cfg.voiceprint_source)
        train_loader = None  # made per epoch, from the step the epoch starts at
    else:
        train_set = MCGridDataset(cfg.data, "train", segment_seconds=cfg.segment_seconds,
                                  voiceprint_source=cfg.voiceprint_source, seed=cfg.seed, limit=cfg.limit_train)
        train_loader = _loader(train_set, cfg, dist, train=True)
    valid_set = MCGridDataset(cfg.data, "valid", segment_seconds=None,
                              voiceprint_source=cfg.voiceprint_source, seed=cfg.seed, limit=cfg.limit_valid)
    valid_loader = _loader(valid_set, cfg, dist, train=False)

    state = {"epoch": 0, "step": 0, "best": -math.inf, "bad_epochs": 0, "history": [], "train_seconds": 0.0,
             "audio_seconds": 0.0}
    if ckpt is not None:
        load_state(model, ckpt["state_dict"], source=str(last_path))
        state.update(ckpt["train_state"])
    elif needs_calibration:
        quant.calibrate(model, calibration_batches(
            model, train_loader or _stream_loader(train_set, cfg, dist, 0, cfg.calibration_batches),
            cfg.calibration_batches, torch.device("cpu")))
    model.to(device)
    net = torch.nn.parallel.DistributedDataParallel(model) if dist.world > 1 else model

    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=cfg.plateau_factor,
                                                           patience=cfg.plateau_patience)
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])

    writer = None
    if dist.main:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(out / "tb"))
    # A resumed run keeps the parent it started from, whatever the bundle holds now.
    parent = ckpt.get("meta", {}).get("parent") if ckpt is not None else parent_record(cfg.init_from)
    meta = {"train_config": cfg.to_dict(), "voiceprint_version": VOICEPRINT_VERSION,
            **({"parent": parent} if parent else {}),
            **({"teacher_sha256": teacher_digest} if teacher_digest else {})}
    started = time.monotonic()
    model.train()
    while state["epoch"] < cfg.epochs:
        if cfg.dynamic_mixing:
            n_steps = cfg.steps_per_epoch
            batches = _stream_loader(train_set, cfg, dist, state["step"], n_steps)
        else:
            if dist.world > 1:
                train_loader.sampler.set_epoch(state["epoch"])
            n_steps = len(train_loader) if cfg.steps_per_epoch is None else min(cfg.steps_per_epoch, len(train_loader))
            batches = train_loader
        bar = tqdm(total=n_steps, desc=f"epoch {state['epoch'] + 1}", disable=not dist.main, leave=False)
        epoch_loss, epoch_start, epoch_audio = 0.0, time.monotonic(), 0.0
        for i, batch in enumerate(batches):
            if i >= n_steps:
                break
            inputs = model_inputs(model, batch, device)
            est = net(*inputs)
            loss = loss_fn(est, batch["target"].to(device), inputs)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            state["step"] += 1
            epoch_loss += loss.item()
            epoch_audio += batch["mixture"].shape[0] * batch["mixture"].shape[-1] / SAMPLE_RATE * dist.world
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.2f}")
            if writer is not None and state["step"] % cfg.log_every == 0:
                writer.add_scalar("train/loss", loss.item(), state["step"])
                writer.add_scalar("train/grad_norm", float(grad_norm), state["step"])
        bar.close()
        elapsed = time.monotonic() - epoch_start
        state["train_seconds"] += elapsed
        state["audio_seconds"] += epoch_audio
        valid_si_sdr = validate(model, valid_loader, device, net)
        scheduler.step(valid_si_sdr)
        state["epoch"] += 1
        lr = optimizer.param_groups[0]["lr"]
        record = {"epoch": state["epoch"], "step": state["step"], "train_loss": epoch_loss / max(n_steps, 1),
                  "valid_si_sdr": valid_si_sdr, "lr": lr, "audio_per_second": epoch_audio / max(elapsed, 1e-9),
                  "train_seconds": state["train_seconds"], "audio_seconds": state["audio_seconds"]}
        state["history"].append(record)
        improved = valid_si_sdr > state["best"]
        state["best"] = max(state["best"], valid_si_sdr)
        state["bad_epochs"] = 0 if improved else state["bad_epochs"] + 1
        if dist.main:
            writer.add_scalar("valid/si_sdr", valid_si_sdr, state["step"])
            writer.add_scalar("train/lr", lr, state["step"])
            writer.add_scalar("train/audio_seconds_per_second", record["audio_per_second"], state["step"])
            print(f"epoch {state['epoch']}: step {state['step']} train loss {record['train_loss']:.3f} "
                  f"valid SI-SDR {valid_si_sdr:.2f} dB lr {lr:.2e} "
                  f"{record['audio_per_second']:.2f} s audio/s", flush=True)
            meta_now = {**meta, "steps": state["step"], "epochs": state["epoch"], "best_valid_si_sdr": state["best"],
                        "audio_seconds_seen": state["audio_seconds"], "train_seconds": state["train_seconds"]}
            if improved:
                save_checkpoint(best_path, model, meta={**meta_now, "valid_si_sdr": valid_si_sdr})
            save_checkpoint(last_path, model, meta=meta_now, optimizer=optimizer.state_dict(),
                            scheduler=scheduler.state_dict(), train_state=state)
        if state["bad_epochs"] >= cfg.early_stop_patience:
            if dist.main:
                print(f"early stop: no valid improvement for {cfg.early_stop_patience} epochs", flush=True)
            break
        if cfg.max_minutes is not None and (time.monotonic() - started) / 60 >= cfg.max_minutes:
            if dist.main:
                print(f"time budget of {cfg.max_minutes} min reached; resume with --resume", flush=True)
            break
    if writer is not None:
        writer.close()
    if dist.world > 1:
        torch.distributed.destroy_process_group()
    return state
