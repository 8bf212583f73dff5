"""`limuse-edge make-corpus`: build an offline multi-cue corpus in the MC_Grid layout."""
from __future__ import annotations

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="corpus directory to create (must not exist)")
    parser.add_argument("--speech", default=None, metavar="DIR",
                        help="clean speech DIR/<speaker>/<utterance>.{wav,flac}; default: the synthetic talker")
    parser.add_argument("--train", type=int, required=True, help="training mixtures")
    parser.add_argument("--valid", type=int, required=True, help="validation mixtures")
    parser.add_argument("--test", type=int, required=True, help="test mixtures")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=3.0, help="utterance length (default 3)")
    parser.add_argument("--no-face", type=float, default=0.1, metavar="FRACTION",
                        help="fraction of utterances without a face track (default 0.1)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="parallel processes (default: up to 2); the corpus does not depend on it")


def run(args: argparse.Namespace) -> int:
    from limuse_edge.data.build import build_corpus

    stats = build_corpus(args.out, args.train, args.valid, args.test, args.seed, seconds=args.seconds,
                         speech_dir=args.speech, no_face_fraction=args.no_face, workers=args.workers)
    n = sum(stats["lines"].values())
    print(f"{args.out}: {n} mixtures ({stats['lines']}), {stats['clean_utterances']} clean utterances, "
          f"SNR {stats['snr_db_written']['min']:.2f}..{stats['snr_db_written']['max']:.2f} dB, "
          f"{stats['build_seconds']:.1f} s")
    return 0
