"""`limuse-edge <command>`: a thin dispatcher. Each command lives in its own module, which provides
`add_arguments(parser)` and `run(args) -> int`."""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "profile": ("limuse_edge.profile_cli", "params, size and MACs of a preset under a recipe"),
    "make-speech-pool": ("limuse_edge.data.pool_cli", "build the offline speech pool for dynamic mixing"),
    "make-corpus": ("limuse_edge.data.cli", "build an offline multi-cue corpus in the MC_Grid layout"),
    "train": ("limuse_edge.train.cli", "train a model (float or QAT) from a YAML config"),
    "evaluate": ("limuse_edge.evaluate_cli", "SI-SDR / SDR / SDRi of a checkpoint on a corpus split"),
    "export": ("limuse_export.to_onnx", "QONNX, int8 (QCDQ) and float ONNX with a parity report"),
}

# Errors that bad input raises on purpose: reported on one line, never as a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, KeyError)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="limuse-edge", description="LiMuSE toolchain: build corpora, train, evaluate, profile.")
    sub = parser.add_subparsers(dest="command", required=True)
    # Only the chosen command's module is imported: the others may pull in torch and brevitas.
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    module = None
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(command_parser)
    args = parser.parse_args(argv)
    try:
        return int(module.run(args) or 0)
    except USER_ERRORS as exc:
        print(f"limuse-edge {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
