"""`python -m bench`: a quick run of the scale scenario end to end on the test database, and the
table of docs/benchmarks.md rendered from hand-built results. No timing is asserted."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from bench.__main__ import load, run
from bench.results import Figure, ScenarioResult, Series, from_json, to_json
from bench.table import BEGIN, END, render_rows, render_section, replace_section

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def hand_built() -> ScenarioResult:
    return ScenarioResult(
        slug="made-up",
        title="A made-up scenario",
        command=".venv/bin/python -m bench.made_up",
        figures=[
            Figure("append", "events/s", [900.0, 1000.0, 1100.0], "RAW", [2000.0], goal=0.6),
            Figure("resume p50", "ms", [2.0, 3.0], "bare read", [1.0], higher_is_better=False),
            Figure("memory per key", "bytes", [512.0]),
        ],
        series=[Series("append (events/s)", [(10.0, 1000.0), (100.0, 900.0)])],
        x_label="events in the log",
        about={"code": "abc1234", "cpu_cores": 2},
    )


def test_quick_scale_run_writes_json_png_and_the_table(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTINUITY_BENCH_DATABASE_URL", database_url)
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nWhat was here stays.\n", encoding="utf-8")
    out = tmp_path / "bench"
    console = Console(file=io.StringIO(), width=120)

    status = run(["--quick", "--only", "scale", "--out", str(out)], console)

    assert status == 0
    result = from_json((out / "scale.json").read_bytes())
    assert isinstance(result, ScenarioResult)
    assert result.slug == "scale"
    assert result.figures
    assert all(f.rounds for f in result.figures)
    assert {s.label for s in result.series} >= {"OURS append (events/s)", "OURS resume p50 (ms)"}
    assert (out / "scale.png").read_bytes().startswith(PNG_SIGNATURE)
    text = doc.read_text(encoding="utf-8")
    assert text.startswith(f"# Benchmarks\n\n{BEGIN}\n")
    assert text.endswith("What was here stays.\n")
    table = text[text.index(BEGIN) : text.index(END)]
    assert sum(line.startswith("| scale |") for line in table.splitlines()) == len(result.figures)
    assert "(bench/scale.png)" in table


def test_the_table_has_a_row_per_figure() -> None:
    result = hand_built()
    lines = render_rows([result]).splitlines()
    assert len(lines) == 2 + len(result.figures)
    append, resume, memory = lines[2:]
    expected = ["1,000 events/s", "2,000 (RAW)", "0.50x", "≥ 0.60x", "**no**"]
    assert append.split(" | ")[2:7] == expected
    assert resume.split(" | ")[2:7] == ["2.50 ms", "1.00 (bare read)", "2.50x", "\u2013", "\u2013"]
    assert memory.split(" | ")[2:4] == ["512 bytes", "\u2013"]
    assert append.endswith("| 900\u20131,100 |")


def test_the_section_replaces_only_what_lies_between_the_markers(tmp_path: Path) -> None:
    result = hand_built()
    doc, out = tmp_path / "docs" / "benchmarks.md", tmp_path / "docs" / "bench"
    section = render_section([result], {"code": "def5678"}, doc, out, "make bench")
    assert "`made-up` is from an earlier run" in section
    assert "[made-up](bench/made-up.png)" in section
    first = replace_section("# Benchmarks\n\n## Appends\n\ntext\n", section)
    assert first == f"# Benchmarks\n\n{BEGIN}\n{section}\n{END}\n\n## Appends\n\ntext\n"
    again = replace_section(first, "new")
    assert again == f"# Benchmarks\n\n{BEGIN}\nnew\n{END}\n\n## Appends\n\ntext\n"


def test_json_round_trips_with_the_computed_figures() -> None:
    result = hand_built()
    data = to_json(result)
    assert from_json(data) == result
    assert b'"ratio": 0.5' in data
    assert b'"met": false' in data


def test_a_module_not_there_yet_is_not_available() -> None:
    assert load("bench.not_written_yet") is None
    assert load("bench.scale") is not None
