"""limuse-run: target-speaker extraction on a CPU board (numpy, onnxruntime, soundfile; no torch).

    limuse-run --model M.int8.onnx --mixture mix.wav [--voiceprint vp.npy] [--visual lips.npy]
               --out target.wav [--threads N] [--window S] [--overlap S]
    limuse-run <subcommand> ...      (see SUBCOMMANDS)
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time

from limuse_runtime.errors import InputError

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
    return run(argv)


def dispatch(name: str, argv: list[str]) -> int:
    module_name, function_name = SUBCOMMANDS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            print(f"limuse-run {name}: error: {module_name} is not installed; expected the package "
                  f"that provides it", file=sys.stderr)
            return 2
        raise
    return int(getattr(module, function_name)(argv) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="limuse-run", description=__doc__.splitlines()[0],
                                     epilog=f"sub-commands: {', '.join(SUBCOMMANDS)}")
    parser.add_argument("--model", required=True,
                        help="exported <name>.int8.onnx, <name>.float.onnx or <name>.packed.bin (native engine)")
    parser.add_argument("--mixture", required=True, help="16 kHz wav with the model's microphone channels")
    parser.add_argument("--voiceprint", help="(512,) .npy speaker embedding; required unless the model has no VP")
    parser.add_argument("--visual", help="(frames, 256) .npy lip features at 25 fps; missing means no face")
    parser.add_argument("--out", required=True, help="output wav (mono, 16 kHz, float)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    parser.add_argument("--resample", action="store_true", help="convert a mixture at another rate (>= 8 kHz) to 16 kHz")
    parser.add_argument("--channels", help="the microphones to use of a wider array, e.g. 0,1 (indices from 0)")
    parser.add_argument("--window", type=float, default=None, help="window length in seconds (default 3.0)")
    parser.add_argument("--overlap", type=float, default=None, help="window overlap in seconds (default 0.4)")
    return parser


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        # onnxruntime is imported only for an ONNX model: the golden and native engines do without it
        # (20 MB of the native run's peak memory).
        from limuse_runtime.contract import load_visual, load_voiceprint
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
        from limuse_runtime.recording import model_input, parse_channels
        channels = parse_channels(args.channels) if args.channels else None
        if channels is not None and len(channels) != separator.contract.mic_channels:
            raise InputError(f"--channels: got {len(channels)} channel(s); this model expects "
                             f"{separator.contract.mic_channels} microphones")
        started = time.perf_counter()
        with model_input(args.mixture, channels, args.resample) as mixture:
            duration = separate_file(separator, separator.contract, mixture, args.out, voiceprint, visual, plan)
        wall = time.perf_counter() - started
    except InputError as exc:
        print(f"limuse-run: error: {exc}", file=sys.stderr)
        return 2
    print(f"duration {duration:.2f} s  wall {wall:.3f} s  RTF {wall / duration:.4f}  -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
