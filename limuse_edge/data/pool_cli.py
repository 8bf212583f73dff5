"""`limuse-edge make-speech-pool`: build the offline speech pool that dynamic mixing draws from."""
from __future__ import annotations

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="pool directory to create (must not exist)")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--talkers", type=int, default=100, help="built-in talker voices (default 100)")
    parser.add_argument("--espeak-voices", type=int, default=200, help="espeak-ng voices (default 200)")
    parser.add_argument("--utterances", type=int, default=10, help="utterances per voice (default 10)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="parallel processes (default: up to 2); the pool does not depend on it")


def run(args: argparse.Namespace) -> int:
    from limuse_edge.data.pool import build_pool, read_pool

    index = build_pool(args.out, args.seed, talkers=args.talkers, espeak_voices=args.espeak_voices,
                       utterances=args.utterances, workers=args.workers)
    pool = read_pool(args.out)
    roles = ", ".join(f"{len(pool.role(r))} {r}" for r in ("train", "valid", "unseen"))
    hours = sum(u["samples"] for v in index["voices"].values() for u in v["utterances"].values()) / 16000 / 3600
    print(f"{args.out}: {len(index['voices'])} voices ({roles}), {hours:.2f} h of speech, "
          f"{index['build_seconds']:.0f} s")
    return 0
