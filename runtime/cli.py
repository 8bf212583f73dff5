"""limuse-run: target-speaker extraction on a CPU board (numpy, onnxruntime, soundfile; no torch).

    limuse-run --model M.int8.onnx --mixture mix.wav [--voiceprint vp.npy] [--visual lips.npy]
               --out target.wav [--threads N] [--window S] [--overlap S]
    limuse-run <subcommand> ...      (see SUBCOMMANDS)
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
import time

from limuse_runtime.errors import ArgumentParser, InputError

# Other tools of the runtime register here: name -> "module:function", called with the remaining argv
# and returning an exit code. The module is imported only when its sub-command is used.
SUBCOMMANDS = {
    "golden": "limuse_runtime.golden.cli:run_golden_cli",
    "enroll": "limuse_runtime.enroll:run_enroll_cli",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        return dispatch(argv[0], argv[1:])
    with interruptible("limuse-run") as stopped:
        try:
            return run(argv)
        except Interrupted:
            return stopped()


class Interrupted(BaseException):
    """SIGTERM, SIGHUP or SIGINT during a run. A BaseException, so that no `except Exception` swallows it:
    it unwinds through every `with` (atomic_path deletes the partial output, TemporaryDirectory the
    converted copy of the input) to the CLI, which exits with 128 + the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, name))


@contextlib.contextmanager
def interruptible(prog: str):
    """Within the block the stop signals raise Interrupted (once: a second signal during the clean-up is
    ignored, so the clean-up finishes). Yields stopped(): prints the one line and returns 128 + signal."""
    received: list[int] = []

    def handler(signum, frame):
        if received:
            return
        received.append(signum)
        raise Interrupted(signum)

    def stopped() -> int:
        name = signal.Signals(received[0]).name if received else "a signal"
        print(f"{prog}: stopped by {name}; no output written", file=sys.stderr)
        return 128 + (received[0] if received else signal.SIGTERM)

    if threading.current_thread() is not threading.main_thread():  # signal handlers: main thread only
        yield stopped
        return
    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield stopped
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def dispatch(name: str, argv: list[str]) -> int:
    module_name, function_name = SUBCOMMANDS[name].split(":")
    # a sub-command's optional dependency (golden: the onnx package) may be imported at its start or later
    with interruptible(f"limuse-run {name}") as stopped:
        try:
            module = importlib.import_module(module_name)
            return int(getattr(module, function_name)(argv) or 0)
        except ModuleNotFoundError as exc:
            missing = (exc.name or "").split(".")[0]
            extra = ' (pip install "./runtime[golden]")' if missing == "onnx" else ""
            print(f"limuse-run {name}: error: the Python package {missing or exc.name!r} is not installed; "
                  f"expected it for this sub-command{extra}", file=sys.stderr)
            return 2
        except Interrupted:
            return stopped()


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="limuse-run", description=__doc__.splitlines()[0],
                            epilog=f"sub-commands: {', '.join(SUBCOMMANDS)}")
    parser.add_argument("--model", required=True,
                        help="exported <name>.int8.onnx, <name>.float.onnx or <name>.packed.bin (native engine)")
    parser.add_argument("--mixture", required=True, help="16 kHz wav with the model's microphone channels")
    parser.add_argument("--voiceprint", help="(512,) .npy speaker embedding; required unless the model has no VP")
    parser.add_argument("--visual", help="(frames, 256) .npy lip features at 25 fps; missing means no face")
    parser.add_argument("--out", required=True, help="output wav (mono, 16 kHz, float)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads of the engine (default 1; at most the machine's CPU count)")
    parser.add_argument("--resample", action="store_true", help="convert a mixture at another rate (>= 8 kHz) to 16 kHz")
    parser.add_argument("--channels", help="the microphones to use of a wider array, e.g. 0,1 (indices from 0)")
    parser.add_argument("--window", type=float, default=None, help="window length in seconds (default 3.0)")
    parser.add_argument("--overlap", type=float, default=None, help="window overlap in seconds (default 0.4)")
    return parser


def one_line(exc: BaseException) -> str:
    """The message on one line, whatever a library put into it."""
    return " ".join(str(exc).split())


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        # everything that needs no model first: a bad flag or path costs nothing and destroys nothing
        from limuse_runtime.contract import (check_output_path, check_threads, load_visual, load_voiceprint,
                                             probe_output_dir)
        check_threads(args.threads)
        from limuse_runtime.streaming import WindowPlan
        for name, value in (("window", args.window), ("overlap", args.overlap)):
            if value is not None:
                WindowPlan.check_seconds(name, value)
        check_output_path(args.out, (args.mixture, args.voiceprint, args.visual, args.model))
        out_dir = os.path.dirname(args.out) or "."
        if not os.path.isdir(out_dir):
            raise InputError(f"out: directory {out_dir!r} does not exist; expected a path to a .wav file in an "
                             f"existing directory")
        probe_output_dir(args.out)
        # onnxruntime is imported only for an ONNX model: the golden and native engines do without it
        # (20 MB of the native run's peak memory).
        from limuse_runtime.streaming import DEFAULT_OVERLAP_S, DEFAULT_WINDOW_S, WindowPlan, separate_file
        from limuse_runtime.native.binding import is_packed_model, native_separator
        if is_packed_model(args.model):  # <name>.packed.bin: the native integer engine (runtime/native)
            separator, plan = native_separator(args.model, args.threads, args.window, args.overlap)
        else:
            plan = WindowPlan.from_seconds(DEFAULT_WINDOW_S if args.window is None else args.window,
                                           DEFAULT_OVERLAP_S if args.overlap is None else args.overlap)
            from limuse_runtime.backend import OrtSeparator
            separator = OrtSeparator(args.model, threads=args.threads)
        voiceprint = load_voiceprint(args.voiceprint) if args.voiceprint else None
        visual = load_visual(args.visual) if args.visual else None
        if voiceprint is None and separator.contract.has_voiceprint:
            raise InputError("voiceprint: missing; this model expects --voiceprint, a .npy of shape (512,)")
        from limuse_runtime.recording import model_input, parse_channels, wav_missing_bytes
        channels = parse_channels(args.channels) if args.channels else None
        if channels is not None and len(channels) != separator.contract.mic_channels:
            raise InputError(f"--channels: got {len(channels)} channel(s); this model expects "
                             f"{separator.contract.mic_channels} microphones")
        truncated = wav_missing_bytes(args.mixture)
        started = time.perf_counter()
        with model_input(args.mixture, channels, args.resample) as mixture:
            duration = separate_file(separator, separator.contract, mixture, args.out, voiceprint, visual, plan)
        wall = time.perf_counter() - started
    except InputError as exc:
        print(f"limuse-run: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except MemoryError:  # the partial output is gone (atomic_path); say so in one line
        print(f"limuse-run: error: out of memory for the model {args.model!r} (its window and activations); "
              f"expected a model and --window that fit this machine", file=sys.stderr)
        return 2
    if truncated:  # README: a cut-off recording is processed as far as it goes, with this one warning
        print(f"limuse-run: warning: mixture {args.mixture!r} is truncated: its data chunk declares {truncated[0]} "
              f"bytes and the last {truncated[1]} are missing; processed the samples present", file=sys.stderr)
    engine = getattr(getattr(separator, "model", None), "isa", None)  # the native engine's SIMD path
    print(f"duration {duration:.2f} s  wall {wall:.3f} s  RTF {wall / duration:.4f}  -> {args.out}"
          + (f"  (native engine, {engine})" if engine else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
