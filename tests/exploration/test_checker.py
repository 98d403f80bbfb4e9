"""``ClusterChecker``: every cluster of a group gets the transplant, its null beside it, and
the masking check where it confirms; ``decided_by_transplant`` lets those figures flag."""

from __future__ import annotations

import math

import numpy as np

from captum_gmar import explore, load_maps, load_reference_model
from captum_gmar.dataset_maps.storage import read_maps
from captum_gmar.exploration.checker import ClusterChecker, decided_by_transplant

#: settings that cluster the 12 maps of the bundled scenes
SMALL = {"neighbours": 3, "max_clusters": 3, "progress": False}


def test_the_transplant_pastes_a_clusters_region_on_the_images_of_another_class(job, tmp_path):
    """The job explains one class; its 12 images stand for another class's here too, so
    that the checker has images to paste on."""
    result = explore(job, tmp_path / "exp", images=job.parent / "scenes", **SMALL)
    records = load_maps(job, "gmar-l1")
    names, maps = [record.image for record in records], read_maps(records).numpy()
    checker = ClusterChecker(load_reference_model(), None, job.parent / "scenes", seed=0)
    found = {("gmar-l1", 0): result.strategies["gmar-l1", 0]}
    checks = checker.run(found, {0: np.arange(12), 1: np.arange(12)}, {"gmar-l1": names}, {"gmar-l1": maps}, "positive", progress=False)
    strategies = found["gmar-l1", 0]
    assert {label for _, _, label in checks} == {c.label for c in strategies.ranking}  # every cluster
    for (_, _, label), check in checks.items():
        transplant = check.transplant
        assert transplant is not None and transplant.pasted == 12 and -1 <= transplant.rise <= 1 and -1 <= transplant.null <= 1
        assert "pasted on 12 images of other classes" in check.summary() and "the class's other clusters moved there" in check.summary()
        if transplant.screened:  # the paste and the null only: the rise does not stand beyond the null
            assert not transplant.confirms and transplant.rise - transplant.null < transplant.needed
            assert math.isnan(transplant.control) and "not pasted, the rise standing less than the null" in check.summary()
        else:
            assert transplant.note is None and -1 <= transplant.control <= 1
            assert transplant.pasted_own == int(np.sum((strategies.labels != label) & (strategies.labels >= 0)))
        assert bool(check.members) == transplant.confirms  # the masking check: where the transplant confirms
    decided = decided_by_transplant(found, checks)["gmar-l1", 0]
    for cluster in decided.ranking:
        assert cluster.flagged_by == "transplant" and cluster.flagged == checks["gmar-l1", 0, cluster.label].transplant.confirms
        assert cluster.reason.startswith(("flagged by the transplant (", "not flagged by the transplant ("))
        assert cluster.suspected == strategies.cluster(cluster.label).suspected  # the suspicion's verdict, kept beside it
