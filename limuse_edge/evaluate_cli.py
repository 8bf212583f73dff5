"""`limuse-edge evaluate --checkpoint CKPT --data DIR --split test [--limit N] [--out DIR]`."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from limuse_runtime.contract import atomic_write_text


def add_arguments(parser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a .pt checkpoint")
    src.add_argument("--pretrained", help="a bundled model name, e.g. limuse_k32_w3a8")
    parser.add_argument("--data", required=True, help="corpus directory in the MC_Grid layout")
    parser.add_argument("--split", default="test", choices=["train", "valid", "test"])
    parser.add_argument("--limit", type=int, default=None, help="score only the first N utterances")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--voiceprint-source", default="target", choices=["target", "reference"])
    parser.add_argument("--out", default=None, help="folder for evaluate.json and per_utterance.csv")


def run(args) -> int:
    from limuse_edge.checkpoint import load_checkpoint
    from limuse_edge.data import MCGridDataset
    from limuse_edge.evaluate import evaluate
    from limuse_edge.pretrained import from_pretrained

    model = from_pretrained(args.pretrained) if args.pretrained else load_checkpoint(args.checkpoint)[0]
    dataset = MCGridDataset(args.data, args.split, segment_seconds=None,
                            voiceprint_source=args.voiceprint_source, limit=args.limit)
    result = evaluate(model, dataset, batch_size=args.batch_size)
    s = result["summary"]
    print(f"{s['n_utterances']} utterances ({args.split}): "
          f"estimate SI-SDR {s['si_sdr']:.2f} dB, SDR {s['sdr']:.2f} dB, SDRi {s['sdri']:.2f} dB; "
          f"mixture SI-SDR {s['mixture_si_sdr']:.2f} dB, SDR {s['mixture_sdr']:.2f} dB")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        summary = {"source": args.checkpoint or args.pretrained, "data": str(args.data), "split": args.split,
                   **s}
        atomic_write_text(out / "evaluate.json", json.dumps(summary, indent=2))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(result["rows"][0]))
        writer.writeheader()
        writer.writerows(result["rows"])
        atomic_write_text(out / "per_utterance.csv", buf.getvalue())
        print(f"wrote {out / 'evaluate.json'} and {out / 'per_utterance.csv'}")
    return 0
