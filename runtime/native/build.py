"""Compile the native engine into a shared library beside this file (what `pip install ./runtime` does).

    python -m limuse_runtime.native.build [--cc gcc] [--no-openmp]

Plain C99 with libm; OpenMP when the compiler has it. FP contraction stays off: a fused multiply-add
rounds once where numpy rounds twice, and the float kernels must equal the golden engine's bit for bit.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = ("model.c", "kernels.c", "engine.c")
FLAGS = ("-std=c99", "-O3", "-fPIC", "-ffp-contract=off", "-Wall", "-Wextra", "-Werror=implicit-function-declaration")
# versioned name: a plain .so inside the package would look like a Python extension module to importers
LIBRARY = "liblimuse_native.so.1"


def compiler(cc: "str | None" = None) -> "str | None":
    for candidate in ([cc] if cc else [os.environ.get("CC"), "cc", "gcc", "clang"]):
        if candidate and shutil.which(candidate):
            return candidate
    return None


def build(out: "str | Path | None" = None, cc: "str | None" = None, openmp: bool = True,
          extra: tuple = ()) -> Path:
    """Builds the library (atomically) and returns its path; RuntimeError with the compiler's message."""
    cc = compiler(cc)
    if cc is None:
        raise RuntimeError("native engine: no C compiler found (cc, gcc, clang); install one, e.g. apt-get install gcc")
    out = Path(out) if out else HERE / LIBRARY
    sources = [str(HERE / s) for s in SOURCES]
    # -march=native: the machine it will run on (the pip install case); FP contraction stays off, so the
    # wider vectors change speed only. Each option is dropped if the compiler refuses it.
    attempts = [["-march=native", "-fopenmp"], ["-fopenmp"], []] if openmp else [["-march=native"], []]
    error = ""
    for omp in attempts:
        # not contract.atomic_path: runtime/setup.py runs this file at install time, stdlib only, before
        # the package limuse_runtime is importable
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".so", dir=out.parent)
        os.close(fd)
        cmd = [cc, *FLAGS, *omp, *extra, "-shared", "-o", tmp, *sources, "-lm"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode == 0:
            os.replace(tmp, out)
            return out
        Path(tmp).unlink(missing_ok=True)
        error = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
    raise RuntimeError(f"native engine: {cc} failed: {error}")


def with_native_engine(build_py: type) -> type:
    """setuptools' build_py command that also compiles the engine: into the build's limuse_runtime/native/,
    or in place for an editable install (whose package is the source folder). Without a C compiler the
    install still succeeds (the onnxruntime backend only). Used by both setup.py files (the runtime's,
    and the repository's, whose wheel holds limuse_runtime too)."""

    class BuildWithNativeEngine(build_py):
        def run(self):
            super().run()
            target = None if getattr(self, "editable_mode", False) else \
                Path(self.build_lib) / "limuse_runtime" / "native" / LIBRARY
            if target is not None:
                target.parent.mkdir(parents=True, exist_ok=True)
            try:
                print(f"native engine: built {build(target)}")
            except RuntimeError as exc:
                print(f"warning: {exc}; the native engine (limuse-run --model <name>.packed.bin) is not available")

    return BuildWithNativeEngine


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m limuse_runtime.native.build", description=__doc__.splitlines()[0])
    parser.add_argument("--cc", help="C compiler (default: $CC, cc, gcc or clang)")
    parser.add_argument("--no-openmp", action="store_true", help="build single-threaded")
    args = parser.parse_args(argv)
    try:
        path = build(cc=args.cc, openmp=not args.no_openmp)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
