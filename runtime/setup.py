"""pip install ./runtime: the metadata is in pyproject.toml; this file adds one build step, compiling the
native engine (native/*.c, plain C99) into limuse_runtime/native/liblimuse_native.so.1 on the machine it
will run on. Without a C compiler the install still succeeds (onnxruntime backend only) and asking for the
native engine says how to get it.

This folder is also the package limuse_runtime, so everything runs under the __main__ guard (as setup.py,
not when the package's modules are imported)."""


def main() -> None:
    import importlib.util
    from pathlib import Path

    from setuptools import setup
    from setuptools.command.build_py import build_py

    spec = importlib.util.spec_from_file_location("native_build", Path(__file__).resolve().parent / "native" / "build.py")
    native_build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(native_build)  # stdlib only: the package itself is not importable yet
    setup(cmdclass={"build_py": native_build.with_native_engine(build_py)})


if __name__ == "__main__":
    main()
