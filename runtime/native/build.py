"""Compile the native engine into a shared library beside this file (what `pip install ./runtime` does).

    python -m limuse_runtime.native.build [--cc gcc] [--no-openmp] [--program OUT]

The flags live in the Makefile beside this file, and this runs it (`make`); where make is absent, it reads
the Makefile's flags and compiles on one cc line (gcc then still gets the AVX2 path, kernels_avx2.c; clang
gets portable and SSE2). One binary for every CPU of the architecture, its SIMD path picked at run time;
never -march=native. OpenMP when the compiler has it.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAKEFILE = HERE / "Makefile"
# versioned name: a plain .so inside the package would look like a Python extension module to importers
LIBRARY = "liblimuse_native.so.1"
PROGRAM_SOURCE = "limuse_native_run.c"


def makefile_variables() -> dict:
    """The Makefile's plain `NAME = value` assignments (the first of each): CFLAGS, OPENMP, SOURCES, ..."""
    found = {}
    for line in MAKEFILE.read_text().splitlines():
        match = re.match(r"^([A-Z0-9_]+)\s*=\s*(.*)$", line)
        if match and match.group(1) not in found:
            found[match.group(1)] = match.group(2).split()
    return found


SOURCES = tuple(makefile_variables()["SOURCES"])
FLAGS = tuple(makefile_variables()["CFLAGS"])


def compiler(cc: "str | None" = None) -> "str | None":
    for candidate in ([cc] if cc else [os.environ.get("CC"), "cc", "gcc", "clang"]):
        if candidate and shutil.which(candidate):
            return candidate
    return None


def cc_line(cc: str, out: "str | Path", openmp: bool = True, extra: tuple = (), program: bool = False) -> list:
    """The one cc line that builds the library (or limuse_native_run) with the Makefile's flags, for a
    machine without make (and for porters: README.md)."""
    flags = makefile_variables()
    sources = ([PROGRAM_SOURCE] if program else []) + flags["SOURCES"]
    return [cc, *flags["CFLAGS"], *(flags["OPENMP"] if openmp else []), *extra, *([] if program else ["-shared"]),
            "-o", str(out), *(str(HERE / s) for s in sources), "-lm"]


def build(out: "str | Path | None" = None, cc: "str | None" = None, openmp: bool = True,
          extra: tuple = (), program: bool = False) -> Path:
    """Builds the library, or with program=True limuse_native_run, (atomically) and returns its path;
    RuntimeError with the compiler's message. extra: more compiler flags (the tests')."""
    cc = compiler(cc)
    if cc is None:
        raise RuntimeError("native engine: no C compiler found (cc, gcc, clang); install one, e.g. apt-get install gcc")
    out = Path(out) if out else HERE / ("limuse_native_run" if program else LIBRARY)
    out = out.resolve()
    make = shutil.which("make")
    error = ""
    for omp in ([True, False] if openmp else [False]):  # OpenMP dropped if the compiler refuses it
        # not contract.atomic_path: runtime/setup.py runs this file at install time, stdlib only, before
        # the package limuse_runtime is importable
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        os.close(fd)
        with tempfile.TemporaryDirectory(prefix=f".{out.name}.objects.", dir=out.parent) as objects:
            if make:
                cmd = [make, "-s", "-C", str(HERE), f"CC={cc}", f"O={objects}", f"EXTRA={' '.join(extra)}",
                       *([] if omp else ["OPENMP="]), *([f"RUN={tmp}", "run"] if program else [f"OUT={tmp}", "all"])]
            else:
                cmd = cc_line(cc, tmp, omp, extra, program)
            result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode == 0:
            os.chmod(tmp, 0o755)
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
    parser.add_argument("--program", metavar="OUT", help="build limuse_native_run (the standalone program) as OUT")
    args = parser.parse_args(argv)
    try:
        path = build(out=args.program, cc=args.cc, openmp=not args.no_openmp, program=args.program is not None)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
