"""The README's figures equal the reports under benchmarks/results/ (tools/readme_figures.py)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("readme_figures", ROOT / "tools" / "readme_figures.py")
figures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(figures)


def test_every_readme_figure_equals_its_report():
    text = (ROOT / "README.md").read_text()
    assert figures.MARKER.search(text), "README.md holds no figure markers"
    _, problems = figures.render(text)
    assert not problems, ("README.md and benchmarks/results/ disagree; run `python tools/readme_figures.py`:\n"
                          + "\n".join(problems))


def test_readme_is_a_short_user_document():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md: {len(lines)} lines; at most 200"


@pytest.fixture
def reports(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({
        "rows": [{"model": "a", "si_sdr": 12.345}, {"model": "b", "si_sdr": 9.0}],
        "count": 421674240, "met": False, "seconds": 148.2, "odd": {"x.y z": 0.5}}))
    return tmp_path


@pytest.mark.parametrize("spec, value", [
    ("r.rows[model=a].si_sdr", "12.35"), ("r.rows[1].si_sdr|.1f", "9.0"), ("r.rows[model=b&si_sdr=9.0].si_sdr", "9.00"), ("r.count|int", "421 674 240"),
    ("r.count|/1e9|.2f", "0.42"), ("r.met|met", "not met"), ("r.seconds|mmss", "2 min 28 s"),
    ('r.odd["x.y z"]|*100|.0f', "50")])
def test_figure_paths_and_filters(reports, spec, value):
    assert figures.figure(spec, reports) == value


def test_a_stale_figure_is_reported_and_rewritten(reports):
    text = "SI-SDR <!-- fig:r.rows[model=a].si_sdr -->11.00<!-- /fig --> dB"
    new, problems = figures.render(text, reports)
    assert len(problems) == 1 and "'11.00'" in problems[0] and "'12.35'" in problems[0]
    assert new == "SI-SDR <!-- fig:r.rows[model=a].si_sdr -->12.35<!-- /fig --> dB"
    assert figures.render(new, reports)[1] == []


@pytest.mark.parametrize("spec, error", [("missing.count", "no report"), ("r.nokey", "no key 'nokey'"),
                                         ("r.rows[model=c].si_sdr", "0 items with model=c"),
                                         ("r.rows[5]", "no item [5]"), ("r.rows|int", "filter 'int'")])
def test_a_marker_naming_a_missing_report_or_key_fails(reports, spec, error):
    text = f"x <!-- fig:{spec} -->1<!-- /fig -->"
    new, problems = figures.render(text, reports)
    assert new == text and len(problems) == 1 and error in problems[0], problems


def test_check_mode_exits_1_and_rewrite_mode_fixes(reports, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("<!-- fig:r.count|int -->0<!-- /fig -->\n")
    assert figures.main([str(readme), "--check", "--results", str(reports)]) == 1
    assert readme.read_text() == "<!-- fig:r.count|int -->0<!-- /fig -->\n"
    assert figures.main([str(readme), "--results", str(reports)]) == 0
    assert figures.main([str(readme), "--check", "--results", str(reports)]) == 0
    assert "421 674 240" in readme.read_text()
