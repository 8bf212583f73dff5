"""Fill the README's figures in from the JSON reports under benchmarks/results/.

Every figure in README.md sits between two HTML comments (invisible once rendered):

    <!-- fig:REPORT.PATH|FILTER|FILTER -->VALUE<!-- /fig -->

- REPORT is the stem of a report: `quality` reads benchmarks/results/quality.json.
- PATH walks into it: `.key`, `["key with . or spaces"]`, `[3]` (a list index) or `[field=value]`
  (the one item of a list whose `field` reads `value`; `[a=x&b=y]` matches several fields), e.g.
  `quality.unseen_voices.rows[model=limuse_k32_float].si_sdr`.
- FILTERs, applied left to right: `/1e9` or `*100` (arithmetic), `int` (an integer grouped by thousands
  with spaces: 421 674 240), `met` (true -> met, false -> not met), `yes` (yes / no), `abs`, `mmss`
  (seconds -> `2 min 28 s`), or any Python format spec (`.2f`, `.3g`, `d`). Without a filter a float
  is written with two decimals and anything else as it is.

    python tools/readme_figures.py            # rewrite every VALUE in README.md from the reports
    python tools/readme_figures.py --check    # exit 1, naming each marker, when one disagrees

tests/test_readme.py runs the check, so a README figure cannot drift from its report. A marker whose
report or key is missing is an error too."""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MARKER = re.compile(r"<!-- fig:(?P<spec>[^>]*?) -->(?P<value>.*?)<!-- /fig -->", re.S)
_STEP = re.compile(r'\.(?P<name>[^.\[\]|]+)|\["(?P<quoted>[^"]*)"\]|\[(?P<index>-?\d+)\]'
                   r'|\[(?P<field>[^=\]]+)=(?P<wanted>[^\]]*)\]')


class FigureError(ValueError):
    """A marker that names a missing report or key, or a filter that does not apply."""


def _walk(data, path: str, spec: str):
    at = 0
    while at < len(path):
        step = _STEP.match(path, at)
        if step is None:
            raise FigureError(f"{spec}: cannot read the path at {path[at:]!r}")
        at = step.end()
        key = step["name"] if step["name"] is not None else step["quoted"]
        if key is not None:
            if not isinstance(data, dict) or key not in data:
                raise FigureError(f"{spec}: no key {key!r}")
            data = data[key]
        elif step["index"] is not None:
            i = int(step["index"])
            if not isinstance(data, list) or not -len(data) <= i < len(data):
                raise FigureError(f"{spec}: no item [{i}]")
            data = data[i]
        else:
            wanted = dict(c.split("=", 1) for c in f"{step['field']}={step['wanted']}".split("&"))
            found = [item for item in data if isinstance(item, dict)
                     and all(str(item.get(k)) == v for k, v in wanted.items())] if isinstance(data, list) else []
            if len(found) != 1:
                what = "&".join(f"{k}={v}" for k, v in wanted.items())
                raise FigureError(f"{spec}: {len(found)} items with {what} (expected one)")
            data = found[0]
    return data


def _mmss(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _apply(value, flt: str, spec: str):
    try:
        if flt[0] in "/*":
            factor = float(flt[1:])
            return value / factor if flt[0] == "/" else value * factor
        if flt == "int":
            return f"{round(value):,}".replace(",", " ")
        if flt == "met":
            return "met" if value else "not met"
        if flt == "yes":
            return "yes" if value else "no"
        if flt == "abs":
            return abs(value)
        if flt == "mmss":
            return _mmss(value)
        return format(value, flt)
    except (TypeError, ValueError) as e:
        raise FigureError(f"{spec}: filter {flt!r} on {value!r}: {e}") from None


def figure(spec: str, results: Path = RESULTS, cache: dict | None = None) -> str:
    """The text one marker's spec stands for."""
    report, path, filters = re.match(r"([^.\[|]*)([^|]*)(.*)", spec.strip()).group(1, 2, 3)
    cache = {} if cache is None else cache
    if report not in cache:
        file = results / f"{report}.json"
        if not report or not file.is_file():
            raise FigureError(f"{spec}: no report {file}")
        cache[report] = json.loads(file.read_text())
    value = _walk(cache[report], path, spec)
    for flt in [f.strip() for f in filters.split("|") if f.strip()]:
        value = _apply(value, flt, spec)
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def render(text: str, results: Path = RESULTS) -> tuple[str, list[str]]:
    """(text with every marker's value filled in, one line per problem: line, spec, what is wrong)."""
    problems, cache = [], {}

    def fill(match: re.Match) -> str:
        line = text.count("\n", 0, match.start()) + 1
        try:
            value = figure(match["spec"], results, cache)
        except FigureError as e:
            problems.append(f"line {line}: {e}")
            return match.group(0)
        if value != match["value"]:
            problems.append(f"line {line}: {match['spec']}: README has {match['value']!r}, the report {value!r}")
        return f"<!-- fig:{match['spec']} -->{value}<!-- /fig -->"

    return MARKER.sub(fill, text), problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, default=[ROOT / "README.md"])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a figure disagrees")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the reports' folder")
    args = parser.parse_args(argv)
    status = 0
    for file in args.files:
        text = file.read_text()
        new, problems = render(text, args.results)
        broken = [p for p in problems if "README has" not in p]
        for p in problems:
            print(f"{file}: {p}")
        if broken or (args.check and problems):
            status = 1
        if not args.check and new != text:
            file.write_text(new)
            print(f"{file}: {len(problems) - len(broken)} figure(s) updated")
        elif not problems:
            print(f"{file}: {len(MARKER.findall(text))} figures, all current")
    return status


if __name__ == "__main__":
    sys.exit(main())
