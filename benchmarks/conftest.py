"""Shared benchmark helpers: the `results` fixture writes a table as benchmarks/results/<name>.json and
<name>.md (atomically) and prints it.

Heavy variants (limuse_k32 golden runs at 3 s, the PTQ sweep, long-recording latency and memory) carry
`@pytest.mark.slow(reason="what, how long")` and run only with `pytest benchmarks/ --runslow` (or
LIMUSE_RUNSLOW=1); without it they are reported as skipped with that reason."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from limuse_runtime.contract import atomic_write_text

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PAPER_TABLE = Path(__file__).resolve().parents[1] / "tests" / "spec" / "paper_table.json"


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run the heavy benchmarks marked slow (README: Reports)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow(reason): a heavy benchmark; runs with --runslow or LIMUSE_RUNSLOW=1")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("LIMUSE_RUNSLOW") == "1":
        return
    for item in items:
        marker = item.get_closest_marker("slow")
        if marker is not None:
            why = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "heavy")
            item.add_marker(pytest.mark.skip(reason=f"heavy benchmark, runs with --runslow: {why}"))


def markdown_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


class Results:
    def __init__(self, directory: Path):
        self.directory = directory

    table = staticmethod(markdown_table)

    @staticmethod
    def machine_line() -> str:
        """When and where a report was measured: the date (UTC) and the CPU, for every report."""
        import datetime

        from machine import describe, machine
        return (f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on "
                f"{describe(machine())}.")

    def write(self, name: str, data: dict, markdown: str) -> tuple[Path, Path]:
        """Write <name>.json and <name>.md and print the markdown (shown with pytest -s)."""
        json_path, md_path = self.directory / f"{name}.json", self.directory / f"{name}.md"
        atomic_write_text(json_path, json.dumps(data, indent=2) + "\n")
        atomic_write_text(md_path, markdown)
        print(f"\n{markdown}\n(written to {json_path} and {md_path})")
        return json_path, md_path


@pytest.fixture(scope="session")
def results() -> Results:
    return Results(RESULTS_DIR)


@pytest.fixture(scope="session")
def paper_table() -> dict:
    return json.loads(PAPER_TABLE.read_text())
