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

    here = Path(__file__).resolve().parent

    class BuildWithNativeEngine(build_py):
        def run(self):
            super().run()
            spec = importlib.util.spec_from_file_location("native_build", here / "native" / "build.py")
            native_build = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(native_build)  # stdlib only: the package itself is not importable yet
            target = Path(self.build_lib) / "limuse_runtime" / "native" / native_build.LIBRARY
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                native_build.build(target)
                print(f"native engine: built {target}")
            except RuntimeError as exc:  # no compiler, or it failed: the rest of the runtime still installs
                print(f"warning: {exc}; the native engine (limuse-run --model <name>.packed.bin) is not available")

    setup(cmdclass={"build_py": BuildWithNativeEngine})


if __name__ == "__main__":
    main()
