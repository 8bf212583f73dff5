"""`limuse-edge <command>`: a thin dispatcher. Each command lives in its own module, which provides
`add_arguments(parser)` and `run(args) -> int`."""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "profile": ("limuse_edge.profile_cli", "params, size and MACs of a preset under a recipe"),
    "make-corpus": ("limuse_edge.data.cli", "build an offline multi-cue corpus in the MC_Grid layout"),
    "train": ("limuse_edge.train.cli", "train a model (float or QAT) from a YAML config"),
    "evaluate": ("limuse_edge.evaluate_cli", "SI-SDR / SDR / SDRi of a checkpoint on a corpus split"),
}

# Errors that bad input raises on purpose: reported on one line, never as a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, KeyError)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="limuse-edge", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
        modules[name] = module
    args = parser.parse_args(argv)
    try:
        return int(modules[args.command].run(args) or 0)
    except USER_ERRORS as exc:
        print(f"limuse-edge {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
