"""`limuse-edge profile --preset P --recipe R`: params, size and MACs of a preset under a recipe."""
from __future__ import annotations

import json
from pathlib import Path

from limuse_edge.config import PRESETS, get_preset
from limuse_runtime.contract import SAMPLE_RATE, atomic_write_text
from limuse_edge.quant import get_recipe


def add_arguments(parser) -> None:
    parser.add_argument("--preset", default="limuse_k32", help=f"one of {', '.join(PRESETS)} (default limuse_k32)")
    parser.add_argument("--recipe", default="float", help="'float', 'w3a8', 'w4a8-pc-po2', ... (default float)")
    parser.add_argument("--samples", type=int, default=3 * SAMPLE_RATE,
                        help=f"input length in samples at {SAMPLE_RATE} Hz for the MAC count (default 48000, 3 s)")
    parser.add_argument("--json", type=Path, help="also write the profile as JSON to this path")


def run(args) -> int:
    # Validate the cheap things before building a model that may take seconds.
    cfg = get_preset(args.preset)
    get_recipe(args.recipe)
    if args.samples < cfg.filter_length:
        raise ValueError(f"--samples: got {args.samples}; expected at least {cfg.filter_length} "
                         f"(one encoder filter of preset {args.preset})")
    if args.json is not None and not args.json.parent.is_dir():
        raise NotADirectoryError(f"--json: directory {str(args.json.parent)!r} does not exist")

    import torch

    from limuse_edge.profile import format_profile, profile_preset

    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    profile = profile_preset(args.preset, args.recipe, args.samples)
    print(format_profile(profile))
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(profile.to_dict(), indent=2) + "\n")
    return 0

