"""Bundle one test utterance of the synthetic corpus as the offline demo sample.

    python export/make_demo_sample.py [--corpus /work/data/corpus] [--index 0] [--out limuse_edge/assets/demo]

Writes mixture.wav (2 ch, 16 kHz, float), target.wav, voiceprint.npy (512,), visual.npy (75, 256) and
demo.json (where it came from). About 0.65 MB for 3 s.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from limuse_export.demo_sample import DEMO_DIR
from limuse_runtime.contract import SAMPLE_RATE, atomic_write_bytes, atomic_write_text


def _wav(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, SAMPLE_RATE, subtype="FLOAT", format="WAV")
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def make_demo_sample(corpus: "str | Path", index: int, out: "str | Path") -> dict:
    from limuse_edge.data import layout
    from limuse_edge.data.dataset import MCGridDataset
    dataset = MCGridDataset(corpus, "test", limit=index + 1)
    if index >= len(dataset):
        raise ValueError(f"--index: {index} is past the {len(dataset)} test utterances of {corpus}")
    item = dataset[index]
    line = layout.read_list(corpus, "test")[index]
    out = Path(out)
    atomic_write_bytes(out / "mixture.wav", _wav(item["mixture"].numpy().T))
    atomic_write_bytes(out / "target.wav", _wav(item["target"].numpy()))
    atomic_write_bytes(out / "voiceprint.npy", _npy(item["voiceprint"].numpy().astype(np.float32)))
    atomic_write_bytes(out / "visual.npy", _npy(item["visual"].numpy().astype(np.float32)))
    build_info = Path(corpus) / "build_info.json"
    info = {
        "description": "one 3 s test utterance of the synthetic MC_Grid-layout corpus (limuse-edge make-corpus)",
        "split": "test", "index": index, "list_line": " ".join(str(getattr(line, f)) for f in line.__dataclass_fields__),
        "sample_rate": SAMPLE_RATE, "mixture_channels": int(item["mixture"].shape[0]),
        "samples": int(item["mixture"].shape[1]), "visual_frames": int(item["visual"].shape[0]),
        "has_face": bool(item["has_face"]),
        "corpus_seed": json.loads(build_info.read_text()).get("seed") if build_info.is_file() else None,
        "files": {"mixture.wav": "(S, 2) float wav", "target.wav": "(S,) float wav, the target at mic 0",
                  "voiceprint.npy": "(512,) float32", "visual.npy": "(frames, 256) float32, 25 fps"},
    }
    atomic_write_text(out / "demo.json", json.dumps(info, indent=2) + "\n")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="/work/data/corpus")
    parser.add_argument("--index", type=int, default=0, help="line of the test list (default 0)")
    parser.add_argument("--out", default=str(DEMO_DIR))
    args = parser.parse_args(argv)
    try:
        info = make_demo_sample(args.corpus, args.index, args.out)
    except (ValueError, FileNotFoundError, NotADirectoryError, KeyError) as exc:
        print(f"make_demo_sample: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
