"""The bench budget and the offline-book extension, on inputs whose answers are known."""

import os
import sys
from pathlib import Path

import pytest
from matplotlib._animation_data import JS_INCLUDE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from bench import MAX_MB, MAX_RATIO, Run, median_run, over_budget, peak_rss_mb, report, table
from sphinx_offline import CDN_FONT_AWESOME

FLOOR = Run(name="floor", seconds=10.0, peak_mb=500.0)


def test_budget_flags_time_and_memory_separately() -> None:
    assert over_budget(Run("slow", 21.0, 600.0), FLOOR, 2.0, 1000.0) == ["2.10x floor > 2x"]
    assert over_budget(Run("big", 19.0, 1001.0), FLOOR, 2.0, 1000.0) == ["1001 MB > 1000 MB"]
    assert over_budget(Run("fine", 19.0, 999.0), FLOOR, 2.0, 1000.0) == []


def test_default_budget_is_twice_the_floor_and_one_gigabyte() -> None:
    assert over_budget(Run("at the limit", 20.0, 1000.0), FLOOR, MAX_RATIO, MAX_MB) == []
    # Two decimals, so a chapter just over the limit does not read "2.0x floor > 2x".
    assert over_budget(Run("2.01x", 20.1, 500.0), FLOOR, MAX_RATIO, MAX_MB) == ["2.01x floor > 2x"]
    assert over_budget(Run("1.1 GB", 10.0, 1100.0), FLOOR, MAX_RATIO, MAX_MB) == [
        "1100 MB > 1000 MB"
    ]
    budget = "Budget: \N{LESS-THAN OR EQUAL TO} 2\N{MULTIPLICATION SIGN} the floor and "
    assert budget + "\N{LESS-THAN OR EQUAL TO} 1000 MB per chapter." in report(
        "", MAX_RATIO, MAX_MB
    )


def test_table_marks_the_chapter_over_budget() -> None:
    rows = table([Run("ok", 12.0, 700.0), Run("slow", 25.0, 700.0)], FLOOR, 2.0, 1000.0)
    lines = rows.splitlines()
    assert lines[3] == "| ok | 12.0 | 1.20 | 700 | yes |"
    assert lines[4] == "| slow | 25.0 | 2.50 | 700 | **no**: 2.50x floor > 2x |"


def test_median_run_takes_the_middle_time_and_the_highest_peak() -> None:
    runs = [Run("ch", 9.0, 700.0), Run("ch", 30.0, 650.0), Run("ch", 8.0, 720.0)]
    assert median_run(runs) == Run("ch", 9.0, 720.0)
    # An even count takes the lower middle, so one slow outlier cannot raise the result.
    assert median_run(runs[:2]).seconds == 9.0
    with pytest.raises(ValueError, match="at least one Run"):
        median_run([])
    assert "median of the 3 runs" in report("", MAX_RATIO, MAX_MB, rounds=3)


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="VmHWM is Linux's /proc")
def test_peak_memory_of_this_process_is_at_least_its_current_memory() -> None:
    ballast = bytearray(64 * 2**20)
    peak = peak_rss_mb(os.getpid())
    assert peak is not None and peak >= 64
    del ballast


def test_offline_extension_strips_matplotlibs_cdn_stylesheet() -> None:
    stripped = CDN_FONT_AWESOME.sub("", JS_INCLUDE)
    assert "https://" in JS_INCLUDE
    assert "https://" not in stripped
    assert stripped.lstrip().startswith("<script")


def test_grading_bench_reports_submissions_per_minute() -> None:
    from bench_grading import table

    lines = table(6, [(1, 120.0), (2, 80.0)]).splitlines()
    assert lines[2] == "| 1 | 120 s | 3.0 |"
    assert lines[3] == "| 2 | 80 s | 4.5 |"
