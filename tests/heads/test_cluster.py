"""A cluster named ``METHOD:CLASS:RANK`` parsed, and its region said in words as the
explorer page says it."""

from __future__ import annotations

import pytest

from captum_gmar.heads.cluster import parse_cluster, region_words


def test_a_cluster_is_method_class_rank():
    assert parse_cluster("gae:T-shirt/top:1") == ("gae", "T-shirt/top", 1)
    assert parse_cluster("gmar-l1:Ankle boot:12") == ("gmar-l1", "Ankle boot", 12)
    for bad in ("gae:Shirt", "gae:Shirt:0", "gae::1", "gae:Shirt:one"):
        with pytest.raises(ValueError, match="a cluster is METHOD:CLASS:RANK"):
            parse_cluster(bad)


def test_a_region_in_words_counts_its_patches_and_spans_their_rows_and_columns():
    assert region_words(((0, 0), (2, 0))) == "2 patches in rows 0–2, column 0"  # two patches, not the three rows between
    assert region_words([[3, 4]]) == "1 patch in row 3, column 4"
    assert region_words(((0, 1), (0, 5), (1, 3))) == "3 patches in rows 0–1, columns 1–5"
    assert region_words(()) == "0 patches"
