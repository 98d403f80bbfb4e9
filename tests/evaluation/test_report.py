"""Reports of a comparison's rows: the summary (mean and standard error per method, over the
columns the metric groups declare) and paired differences."""

import math

import pytest

from captum_gmar.evaluation.metrics import metric_columns
from captum_gmar.evaluation.report import paired_differences, summarize, summary_columns


def test_summary_is_mean_and_standard_error():
    rows = [{"method": "a", "mass_inside": v, "peak_memory_mb": m} for v, m in ((0.1, 5.0), (0.3, 9.0), (math.nan, 1.0))]
    (entry,) = summarize(iter(rows))
    assert entry["explanations"] == 3 and entry["peak_memory_mb"] == 9.0
    assert entry["mass_inside"] == pytest.approx(0.2) and entry["mass_inside_sem"] == pytest.approx(0.1)


def test_paired_differences_match_items_in_any_order():
    rows = [
        {"method": "b", "item": 1, "mass_inside": 0.5, "pointing_game": math.nan},
        {"method": "a", "item": 0, "mass_inside": 0.4, "pointing_game": 1.0},
        {"method": "c", "item": 0, "mass_inside": 9.0},
        {"method": "b", "item": 0, "mass_inside": 0.1, "pointing_game": 0.0},
        {"method": "a", "item": 1, "mass_inside": 0.6, "pointing_game": 1.0},
        {"method": "a", "item": 2, "mass_inside": 0.9},  # no pair
    ]
    diff = paired_differences(iter(rows), "a", "b")
    assert diff["mass_inside"]["count"] == 2 and diff["mass_inside"]["mean"] == pytest.approx(0.2)
    assert diff["mass_inside"]["sem"] == pytest.approx(0.1)  # differences 0.3 and 0.1
    assert diff["pointing_game"] == {"mean": 1.0, "sem": 0.0, "count": 1}  # the NaN pair is left out
    with pytest.raises(ValueError, match="no item has rows of both"):
        paired_differences(rows, "a", "z")


def test_the_summarys_columns_are_the_metric_groups_then_the_cost():
    columns = list(summary_columns())
    assert columns[: len(metric_columns())] == list(metric_columns())
    assert columns[-2:] == ["seconds_per_image", "peak_memory_mb"]
