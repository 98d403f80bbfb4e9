"""The embedding baseline: a group apart in the embeddings, of which the model is surer,
is one slice and ranked first."""

from __future__ import annotations

import numpy as np

from tools.shortcut.scoring import best_match
from tools.shortcut.slices import embedding_slices


def test_a_separate_confident_group_is_the_first_slice():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(300, 48))
    tagged = np.zeros(300, dtype=bool)
    tagged[:40] = True
    embeddings[tagged] += 4.0 * rng.normal(size=48)  # displaced along one direction
    confidence = np.where(tagged, 0.95, 0.5) + 0.02 * rng.normal(size=300)
    labels, order, k = embedding_slices(embeddings, confidence, seed=0)
    assert labels.shape == (300,) and 2 <= k <= 10 and sorted(order) == sorted(set(labels.tolist()))
    match = best_match(labels, tagged, order)
    assert match.f1 >= 0.95 and match.rank == 1
