"""Which repair auto keeps: the rise removed within the budget, the class not missed on the
shortcut's own images, its lead there taken."""

from __future__ import annotations

from dataclasses import replace

import torch

from captum_gmar.repair import Attempt, Measurement, OwnImages, Repaired
from captum_gmar.repair.choice import as_well, by_spread, choose, costs_class, repairs, short_of_lead


def _choose(before: Measurement, attempts: list[Attempt], budget: float) -> Attempt | None:
    return choose(before, [(a, a.after) for a in attempts], budget)


def test_the_repair_kept_removes_the_shortcut_first_then_respects_the_budget():

    before = Measurement(0.8, 0.90, {})
    heads = Attempt("heads", None, Measurement(0.6, 0.895, {}), 1.0)  # within the budget, most of the rise left
    tuned = Attempt("finetune", None, Measurement(0.02, 0.87, {}), 1.0)  # the rise gone, 3 points spent
    assert _choose(before, [heads, tuned], budget=0.01) is tuned  # a repair that repairs, its cost in the table
    gentle = Attempt("finetune", None, Measurement(0.05, 0.895, {}), 1.0)
    assert _choose(before, [heads, tuned, gentle], budget=0.01) is gentle  # both removed: the one within the budget
    assert _choose(before, [heads], budget=0.01) is heads and _choose(before, [], budget=0.01) is None
    # both removed and within the budget, one of them only by its standard error (2 points ±
    # 1.4 on 200 paired images): the one within as measured, though its rise is higher
    right = torch.arange(200) < 180
    noisy = right.clone()
    noisy[:6], noisy[180:182] = False, True
    paired = Measurement(0.8, 0.90, {}, 200, 0, right)
    lucky = Attempt("heads", None, Measurement(0.01, 0.88, {}, 200, 0, noisy), 1.0)
    measured = Attempt("project", None, Measurement(0.03, 0.90, {}, 200, 0, right), 1.0)
    assert not paired.over(lucky.after, 0.01) and paired.cost(lucky.after) > 0.01
    assert _choose(paired, [lucky, measured], budget=0.01) is measured
    assert _choose(paired, [lucky], budget=0.01) is lucky  # the only one that removed it within the budget
    # the table says which of the two is within the budget only by its error
    notes = [row["note"] for row in Repaired(paired, (lucky, measured), measured, budget=0.01).table()[1:]]
    assert notes == ["within the budget of 1 only by its standard error", None]
    assert Repaired(paired, (lucky,), lucky, budget=0.02).table()[1]["note"] is None  # 2 points as measured: within 2


def test_a_repair_that_leaves_the_lead_on_the_shortcuts_own_images_does_not_end_auto_nor_is_kept_over_one_that_takes_it():
    # the planted noise with 2,000 labelled images: the projection 1.6 ± 0.8 points (within only
    # by its error), 88% of the lead; the fine-tune within as measured, the lead grown by 11%
    was = OwnImages(0.890, 0.395, 0.89, 0.42, 64, 64, True)
    right = torch.arange(400) < 347
    before = Measurement(0.666, 0.868, {}, 400, 0, right, was, 0.017)
    projected, tuned = right.clone(), right.clone()
    projected[:10], projected[347:351] = False, True  # 6 images lost net: 1.5 points
    tuned[:4], tuned[347:349] = False, True  # 0.5 points
    project = Attempt(
        "project", None, Measurement(-0.009, 0.853, {}, 400, 0, projected, OwnImages(0.201, 0.142, 0.89, 0.25, 64, 64, True)), 1.0
    )
    finetune = Attempt(
        "finetune", None, Measurement(0.013, 0.863, {}, 400, 0, tuned, OwnImages(0.853, 0.302, 0.88, 0.28, 64, 64, True)), 1.0
    )
    assert short_of_lead(before, finetune.after) and not short_of_lead(before, project.after)
    assert not repairs(before, finetune.after, 0.01)  # the rise gone within the budget, the lead left: auto goes on
    assert _choose(before, [project, finetune], 0.01) is project
    assert _choose(before, [finetune], 0.01) is finetune  # the only one: kept, and the report warns
    # no lead to judge (below LEADS before), or not read: the lead decides nothing
    flat = Measurement(0.666, 0.868, {}, 400, 0, right, OwnImages(0.45, 0.40, 0.9, 0.4, 64, 64, True), 0.017)
    assert not short_of_lead(flat, finetune.after) and not short_of_lead(Measurement(0.666, 0.868, {}), finetune.after)
    # 80% of the lead taken is enough, 70% is not (REACHES: three quarters)
    for share, short in ((0.8, False), (0.7, True)):
        after = Measurement(0.0, 0.9, {}, own=OwnImages(0.395 + (1 - share) * 0.495, 0.395, 0.9, 0.4, 64, 64, True))
        assert short_of_lead(before, after) is short


def test_against_a_change_drawn_afresh_with_a_lead_to_judge_the_repair_kept_leaves_the_least_spread_of_rises():
    # the planted grain's seed 4, through a texture drawn afresh: the mean rise within the bar,
    # the spread of the images' rises left tells three directions (96% of the drawn grain
    # removed on the test scenes) from the heads (81%) and two directions (79%)
    right = torch.arange(189) < 169

    def read(score: float, rest: float) -> OwnImages:
        return OwnImages(score, rest, 0.8, 0.44, 64, 64, True)

    before = Measurement(0.417, 0.894, {}, 189, 0, right, read(0.867, 0.439), rise_rms=0.553, drawn=True)

    def attempt(how: str, rise: float, rms: float, own: OwnImages) -> Attempt:
        return Attempt(how, None, replace(before, rise=rise, rise_rms=rms, own=own), 1.0)

    # the heads' spread and lead as measured there; their mean set within the bar (0.049 there, 88%, fell short)
    heads = attempt("heads", 0.003, 0.096, read(0.600, 0.613))
    two = attempt("project", -0.018, 0.097, read(0.450, 0.433))
    three = attempt("project", -0.005, 0.067, read(0.182, 0.295))
    # trained against the texture itself: the least spread, and 49% of the lead (80% removed)
    tuned = attempt("finetune", 0.015, 0.050, read(0.664, 0.444))
    assert by_spread(before)
    assert all(repairs(before, a.after, 0.01) for a in (heads, two, three)) and not repairs(before, tuned.after, 0.01)
    assert _choose(before, [heads, three, tuned], 0.01) is three and _choose(before, [two, heads], 0.01) is heads
    # no lead to judge (not read, or below LEADS), no spread measured, or a fixed change: the mean rise decides
    for other in (
        replace(before, own=None),
        replace(before, own=read(0.5, 0.45)),
        replace(before, rise_rms=float("nan")),
        replace(before, drawn=False),
    ):
        assert not by_spread(other) and _choose(other, [heads, two, three], 0.01) is two


def test_a_repair_that_calls_the_rest_of_the_class_less_often_does_not_end_auto_nor_is_kept_over_one_that_does_not():
    # the grain planted on Pullovers, 2,000 labelled images: the heads took the rest of the class
    # called Pullover from 66% to 42% (3.8 points lost on the test scenes), the projection kept it
    # at 64% (1.5 points); both took the lead and removed the drawn grain's spread
    calls = tuple(i < 42 for i in range(64))

    def read(score: float, called: int) -> OwnImages:
        return OwnImages(score, 0.5, 0.9, called / 64, 64, 64, True, tuple(i < called for i in range(64)))

    before = Measurement(0.464, 0.864, {}, own=OwnImages(0.992, 0.564, 1.0, 42 / 64, 64, 64, True, calls), rise_rms=0.592, drawn=True)
    heads = Attempt("heads", None, replace(before, rise=0.017, rise_rms=0.039, own=read(0.283, 27)), 1.0)
    project = Attempt("project", None, replace(before, rise=-0.007, rise_rms=0.056, own=read(0.263, 41)), 1.0)
    assert costs_class(before, heads.after) and not costs_class(before, project.after)
    assert not repairs(before, heads.after, 0.01) and repairs(before, project.after, 0.01)
    # kept over the heads, whose spread is less; where the heads are the only repair, kept all the same
    assert _choose(before, [heads, project], 0.01) is project and _choose(before, [heads], 0.01) is heads
    assert Repaired(before, (heads, project), project).table()[1]["costs_class"]  # the table (and the report's warning) says so
    # a fixed change, where the mean rise decides: the heads' lower rise does not keep them either
    fixed = replace(before, drawn=False)
    lower = Attempt("heads", None, replace(heads.after, rise=-0.02), 1.0)
    assert lower.after.rise < project.after.rise and _choose(fixed, [lower, project], 0.01) is project
    # the budget as measured comes first: one within it only by its standard error, which spares the
    # class, is not kept over one within it as measured, which costs it (1.5 points ± 1.0 on 400 images)
    right = torch.arange(400) < 340
    turned = right.clone()
    turned[:8], turned[340:342] = False, True
    paired = replace(before, right=right, counted=400)
    spares = Attempt("project", None, replace(project.after, right=turned, counted=400, accuracy=0.849), 1.0)
    costs = Attempt("heads", None, replace(heads.after, right=right, counted=400), 1.0)
    assert not paired.over(spares.after, 0.01) and paired.cost(spares.after) > 0.01 and costs_class(paired, costs.after)
    assert _choose(paired, [costs, spares], 0.01) is costs
    # the lead comes first: one that does not cost the class but leaves the lead is not kept over one that takes it
    tuned = Attempt("finetune", None, replace(before, rise=0.009, rise_rms=0.043, own=read(0.845, 40)), 1.0)
    assert short_of_lead(before, tuned.after) and _choose(before, [heads, tuned], 0.01) is heads
    # not judged where the images were not chosen by their labels: nothing is held against the heads
    unlabelled = replace(before, own=replace(before.own, by_label=False))
    assert not costs_class(unlabelled, heads.after)


def test_another_passes_as_well_only_where_it_keeps_every_bar_the_kept_one_keeps():
    right = torch.arange(200) < 180
    before = Measurement(0.8, 0.90, {}, 200, 0, right)
    lost = right.clone()
    lost[:2] = False  # one point: within the budget as measured
    noisy = right.clone()
    noisy[:6], noisy[180:182] = False, True  # 2 points ± 1.4: within only by its standard error
    costly = right.clone()
    costly[:20] = False  # 10 points

    def after(rise: float, which: torch.Tensor) -> Measurement:
        return Measurement(rise, float(which.float().mean()), {}, 200, 0, which)

    kept = after(0.02, right)
    assert as_well(before, kept, after(0.03, lost), 0.01)  # removed, within as measured: as well, if a higher rise
    assert not as_well(before, kept, after(0.2, right), 0.01)  # 75% removed where the kept one removed 98%
    assert not as_well(before, kept, after(0.02, noisy), 0.01)  # within only by its error, the kept one as measured
    assert not as_well(before, kept, after(0.02, costly), 0.01)
    # a bar the kept one does not pass is not asked of the other
    assert as_well(before, after(0.02, noisy), after(0.03, noisy), 0.01)
    # a kept one that does not remove nine tenths within the budget was chosen for its rise or
    # its accuracy, which the bars do not weigh: nothing takes its place
    assert not as_well(before, after(0.5, right), after(0.6, right), 0.01)
    assert not as_well(before, after(0.02, costly), after(0.02, costly), 0.01)
    # the preferences on the shortcut's own images: the other may not miss them where the kept one does not
    was = OwnImages(0.98, 0.33, 1.0, 0.31, 60, 64, True)
    own_before = replace(before, own=was)
    reads = replace(kept, own=OwnImages(0.22, 0.36, 0.90, 0.34, 60, 64, True))
    missing = replace(kept, own=OwnImages(0.21, 0.37, 0.13, 0.38, 60, 64, True))
    assert as_well(own_before, reads, reads, 0.01) and not as_well(own_before, reads, missing, 0.01)
    assert as_well(own_before, missing, reads, 0.01)  # the kept one misses them: not asked of the other
