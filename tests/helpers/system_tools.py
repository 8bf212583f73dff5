"""System tools some tests run (text-to-speech engines, compilers, an emulator), found on PATH.

A test that needs a missing tool skips, naming the Debian package to install. With LIMUSE_REQUIRE_TOOLS=1
in the environment (what .ci/run sets, after installing them) a missing tool fails the test instead, so
CI cannot skip silently."""
from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_ENV = "LIMUSE_REQUIRE_TOOLS"

# tool -> the Debian packages that provide it (apt-get install ...)
PACKAGES = {
    "espeak-ng": "espeak-ng",
    "flite": "flite",
    "cc": "gcc",
    "clang": "clang libclang-rt-14-dev",  # libFuzzer and the sanitizers' runtime
    "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
    "qemu-aarch64": "qemu-user",
}


def required() -> bool:
    return os.environ.get(REQUIRE_ENV) == "1"


def missing_tool(message: str) -> None:
    """Skip the test with `message`, or fail it under LIMUSE_REQUIRE_TOOLS=1."""
    if required():
        pytest.fail(f"{message} [{REQUIRE_ENV}=1: a missing tool fails]", pytrace=False)
    pytest.skip(message)


def require(*tools: str) -> dict[str, str]:
    """{tool: its path} for each of `tools`, or the test skips (fails under LIMUSE_REQUIRE_TOOLS=1),
    naming the missing tools and their packages."""
    found = {tool: shutil.which(tool) for tool in tools}
    missing = [tool for tool, path in found.items() if path is None]
    if missing:
        packages = " ".join(dict.fromkeys(PACKAGES.get(tool, tool) for tool in missing))
        missing_tool(f"needs {', '.join(missing)}, not on PATH: apt-get install {packages}")
    return found


def c_compiler() -> str:
    """The C compiler the native engine's build would take (cc, gcc or clang), or the test skips."""
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    missing_tool("needs a C compiler (cc, gcc or clang), none on PATH: apt-get install gcc")
    raise AssertionError("unreachable")
