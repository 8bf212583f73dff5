"""Export LiMuSE to QONNX, integer-kernel (QCDQ) ONNX and float ONNX, with a parity report.

    python export/to_onnx.py [--checkpoint CKPT | --pretrained NAME | --preset P --recipe R] [--out build/]

With no arguments: the bundled integer-only limuse_k32 (limuse_k32_w3a8_po2_inorm) and its float twin (an
untrained limuse_k32 while the bundled checkpoints are not installed), parity on the bundled demo sample
(plus corpus test utterances with --corpus: onnxruntime against Brevitas, the golden engine against
Brevitas code for code), then one onnxruntime run of the int8 file on the demo sample. Each step's time is
printed and saved in export_report.json.
"""
from __future__ import annotations

import argparse
import sys

from limuse_edge.cli import USER_ERRORS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", help="a .pt written by limuse-edge train")
    source.add_argument("--pretrained", help="a bundled model, e.g. limuse_k32_w3a8")
    source.add_argument("--preset", help="an untrained preset (see limuse_edge.config.PRESETS), e.g. tiny")
    parser.add_argument("--recipe", default="w3a8", help="with --preset: 'float', 'w3a8', 'w4a8-pc-po2', ...")
    parser.add_argument("--out", default="build", help="output folder (default: build/)")
    parser.add_argument("--corpus", help="an MC_Grid corpus whose test utterances join the parity check")
    parser.add_argument("--utterances", type=int, default=3, help="utterances for parity (default 3)")
    parser.add_argument("--check-qonnx", action="store_true",
                        help="also run the QONNX file with qonnx's executor (slow; needs GBs on limuse_k32)")
    parser.add_argument("--one-process", action="store_true",
                        help="run every step in this process (default: the float and QONNX traces and the native "
                             "model in a forked second process, on a second core); the files are the same")


def run(args: argparse.Namespace) -> int:
    import time
    started = time.perf_counter()
    import torch
    from limuse_export import demo_sample, sources
    from limuse_export.pipeline import export_all
    from limuse_export.report import format_report

    if args.recipe != "w3a8" and not args.preset:
        raise ValueError("--recipe: only with --preset (a checkpoint carries its own recipe)")
    if args.utterances < 1:
        raise ValueError(f"--utterances: got {args.utterances}; expected a positive count")
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    if args.checkpoint:
        source = sources.from_checkpoint(args.checkpoint)
    elif args.pretrained:
        source = sources.from_pretrained(args.pretrained)
    elif args.preset:
        from limuse_edge.config import get_preset
        from limuse_edge.quant import get_recipe
        get_preset(args.preset), get_recipe(args.recipe)  # bad names fail before any work
        source = sources.from_preset(args.preset, args.recipe)
    else:
        source = sources.default_source()
    demo = demo_sample.load_demo()
    utterances = [demo]
    if args.corpus and args.utterances > 1:
        utterances += demo_sample.corpus_utterances(args.corpus, args.utterances - 1)
    report = export_all(source, args.out, utterances, check_qonnx=args.check_qonnx,
                        two_processes=not args.one_process)
    print()
    print(format_report(report))
    main_file = "int8" if source.quantized is not None else "float"
    result = report["demo"]
    print(f"\nonnxruntime, {source.name}.{main_file}.onnx on the demo sample ({result['audio_seconds']:.1f} s): "
          f"SI-SDR {result['si_sdr_db']:.2f} dB (mixture mic 0: {result['mixture_si_sdr_db']:.2f} dB), "
          f"{result['seconds'] * 1000:.0f} ms")
    native = report.get("native", {})
    if "demo_si_sdr_db" in native:
        print(f"native engine, {native['file']} ({native['bytes']} bytes, {native['scratch_bytes'] / 2 ** 20:.1f} MiB "
              f"of scratch) on the demo sample: SI-SDR {native['demo_si_sdr_db']:.2f} dB, "
              f"{native['demo_seconds'] * 1000:.0f} ms")
    total = time.perf_counter() - started
    print(f"steps (s): " + ", ".join(f"{k} {v}" for k, v in report["step_seconds"].items())
          + f"; total {total:.0f} s")
    if not source.trained:
        print("NOTE: the model is UNTRAINED (random weights); the SI-SDR above says nothing about quality.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="to_onnx", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except USER_ERRORS as exc:
        print(f"to_onnx: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
