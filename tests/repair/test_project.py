"""The shortcut's directions projected out of a linear classifier (``repair --how project``)."""

from __future__ import annotations

import copy

import pytest
import torch
import transformers
from repair_helpers import LogitsDoubled
from torch import nn

from captum_gmar.errors import UnsupportedModelError
from captum_gmar.repair import Labelled, Measurement, OwnImages, Shortcut, measure, repair
from captum_gmar.repair.measurement import RMS_FALLS
from captum_gmar.repair.project import RIDGES, Projection, change_directions, projection, repair_project
from captum_gmar.vit.model import VisionTransformer


def test_folding_moves_every_input_along_the_directions_to_the_reference():
    torch.manual_seed(0)
    layer = nn.Linear(6, 3)
    directions = torch.linalg.qr(torch.randn(6, 2)).Q.T  # (2, 6) orthonormal
    reference = torch.randn(6)
    found = Projection(directions, reference, torch.eye(6), torch.tensor([0.7, 1.0]))  # isotropic: the orthogonal projection
    x = torch.randn(5, 6)
    expected = layer(x - (x - reference) @ directions.T @ directions)
    found.fold(layer, 2)
    torch.testing.assert_close(layer(x), expected)
    # an input moved along the directions reads as before; one moved across them does not
    torch.testing.assert_close(layer(x + torch.tensor([[3.0], [-1.0]]).T @ directions), layer(x))
    across = torch.randn(6)
    across -= directions.T @ (directions @ across)
    assert not torch.allclose(layer(x + across), layer(x))


def test_through_the_covariance_the_clean_logits_change_least():
    torch.manual_seed(0)
    mixing = torch.randn(8, 8) * torch.linspace(0.1, 3.0, 8)  # anisotropic clean inputs
    clean = torch.randn(4000, 8) @ mixing.T
    direction = torch.nn.functional.normalize(torch.randn(1, 8), dim=1)
    found = Projection(direction, clean.mean(0), torch.cov(clean.T), torch.ones(1))
    layer = nn.Linear(8, 4)
    changes = {}
    for name, ridge in {"least": 0.0, "orthogonal": 1e9, "ridged": 0.1}.items():
        edited = copy.deepcopy(layer)
        found.fold(edited, 1, ridge)
        with torch.no_grad():
            # the shortcut's direction no longer moves any logit, whatever the ridge
            torch.testing.assert_close(edited(clean[:3] + 5 * direction), edited(clean[:3]), atol=1e-4, rtol=0)
            changes[name] = float((edited(clean) - layer(clean)).pow(2).mean())
    assert changes["least"] < changes["ridged"] < changes["orthogonal"]
    orthogonal = copy.deepcopy(layer)
    Projection(direction, clean.mean(0), torch.eye(8), torch.ones(1)).fold(orthogonal, 1)
    edited = copy.deepcopy(layer)
    found.fold(edited, 1, 1e9)  # a ridge that swamps the covariance: the orthogonal projection
    torch.testing.assert_close(edited.weight, orthogonal.weight, atol=1e-5, rtol=0)


def test_a_half_precision_classifier_keeps_its_dtype():
    layer = nn.Linear(4, 2).to(torch.bfloat16)
    direction = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    Projection(direction, torch.ones(4), torch.eye(4), torch.ones(1)).fold(layer, 1)
    assert layer.weight.dtype == layer.bias.dtype == torch.bfloat16 and torch.all(layer.weight[:, 1] == 0)


def test_a_classifier_without_bias_takes_only_a_projection_through_its_reference():
    layer = nn.Linear(4, 2, bias=False)
    direction = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    Projection(direction, torch.zeros(4), torch.eye(4), torch.ones(1)).fold(layer, 1)  # no offset: folds
    assert torch.all(layer.weight[:, 0] == 0)
    with pytest.raises(UnsupportedModelError, match="no bias"):
        Projection(direction, torch.ones(4), torch.eye(4), torch.ones(1)).fold(nn.Linear(4, 2, bias=False), 1)


def test_the_directions_are_orthonormal_the_mean_change_first(setting, lifted):
    model, _, data = setting
    found = projection(model, lifted, data, 4)
    assert found.directions.shape == (4, model.config.hidden_size)
    torch.testing.assert_close(found.directions @ found.directions.T, torch.eye(4), atol=1e-5, rtol=0)
    assert torch.all(found.share[1:] >= found.share[:-1] - 1e-6) and 0 < found.share[0] and found.share[-1] <= 1 + 1e-6
    # the first is the mean change of the classifier's input
    captured = []
    hook = model.classifier.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    vit = VisionTransformer(model)
    with torch.no_grad():
        vit.logits(data.pixels)
        lifted.intervention.logits(vit, data.pixels, torch.ones(len(data)), torch.Generator())
    hook.remove()
    mean = (captured[1] - captured[0]).mean(0)
    torch.testing.assert_close(found.directions[0], mean / mean.norm(), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="at least 1"):
        projection(model, lifted, data, 0)


def test_several_ways_give_each_ones_mean_change_first_in_turn_then_what_is_left():
    generator = torch.Generator().manual_seed(0)
    first, second = torch.zeros(6), torch.zeros(6)
    first[0], second[:2] = 3.0, torch.tensor([2.0, 1.0])  # the second partly along the first
    noise = 0.1 * torch.randn(2, 50, 6, generator=generator)
    noise -= noise.mean(1, keepdim=True)
    change = torch.stack([first, second])[:, None] + noise  # (2 ways, 50 images, 6 features)
    directions, share = change_directions(change, 4)
    assert directions.shape == (4, 6)
    torch.testing.assert_close(directions @ directions.T, torch.eye(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(directions[0], torch.eye(6)[0], atol=1e-5, rtol=0)  # the first way's mean
    torch.testing.assert_close(directions[1], torch.eye(6)[1], atol=1e-5, rtol=0)  # the second's, less its part along the first
    assert float(share[1]) > 0.99 and torch.all(share[1:] >= share[:-1] - 1e-6)
    # one way alone, with or without its axis of ways, is as before: its mean, then the principal directions left
    alone, alone_share = change_directions(change[1], 3)
    torch.testing.assert_close(alone, change_directions(change[1:], 3)[0])
    torch.testing.assert_close(alone[0], second / second.norm(), atol=1e-2, rtol=0)
    assert alone.shape == (3, 6) and float(alone_share[0]) > 0.98  # 5 of 5 + 6 * 0.1^2
    # a way whose mean is along those before adds no direction of its own there
    along, _ = change_directions(torch.stack([change[0], 2 * change[0]]), 2)
    torch.testing.assert_close(along[0], torch.eye(6)[0], atol=1e-5, rtol=0)
    assert abs(float(along[1] @ along[0])) < 1e-5
    # more ways than k: k directions, the first ways' means
    third = torch.zeros(6)
    third[2] = 1.0
    three, _ = change_directions(torch.cat([change, (third[None] + noise[0])[None]]), 2)
    assert three.shape == (2, 6)
    torch.testing.assert_close(three, torch.eye(6)[:2], atol=1e-5, rtol=0)
    with pytest.raises(UnsupportedModelError, match="does not move"):
        change_directions(noise, 2)


@pytest.mark.parametrize("apart", [3e-4, 1e-3, 3e-3])
def test_a_second_mean_nearly_along_the_first_gives_no_duplicate_direction(apart):
    # a mean a little off the first: one Gram-Schmidt pass in float32 leaves round-off
    # along the first that, normalised, is a copy of it; the fold then divides by ~0
    generator = torch.Generator().manual_seed(1)
    first = torch.randn(384, generator=generator)
    off = torch.randn(384, generator=generator)
    off -= (off @ first) / (first @ first) * first
    second = first + apart * first.norm() * off / off.norm()
    noise = 1e-3 * torch.randn(2, 256, 384, generator=generator)
    noise -= noise.mean(1, keepdim=True)
    directions, _ = change_directions(torch.stack([first, second])[:, None] + noise, 4)
    torch.testing.assert_close(directions @ directions.T, torch.eye(len(directions)), atol=1e-4, rtol=0)
    reading = Projection(directions, torch.zeros(384), torch.eye(384), torch.ones(len(directions))).reading(len(directions))
    assert float(reading.abs().max()) < 2.0  # orthonormal rows through the identity covariance: the rows themselves


def test_a_shortcut_of_several_proxies_projects_each_ones_mean_change(setting):
    model, region, data = setting
    curve, difference = Shortcut.of_curve(3, region.members, region.rest), Shortcut.of_difference(3, region.members, region.rest)
    found = projection(model, Shortcut.one_of([difference, curve]), data, 3)
    captured = []
    hook = model.classifier.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    vit = VisionTransformer(model)
    with torch.no_grad():
        vit.logits(data.pixels)
        for proxy in (difference, curve):
            proxy.intervention.logits(vit, data.pixels, torch.ones(len(data)), torch.Generator())
    hook.remove()
    means = [(captured[i] - captured[0]).mean(0) for i in (1, 2)]
    torch.testing.assert_close(found.directions[0], means[0] / means[0].norm(), atol=1e-5, rtol=0)
    left = means[1] - (means[1] @ found.directions[0]) * found.directions[0]
    torch.testing.assert_close(found.directions[1], left / left.norm(), atol=1e-4, rtol=0)


def test_projecting_lowers_the_rise_changes_only_the_classifier_and_reloads(setting, lifted, tmp_path):
    model, _, data = setting
    before = {name: value.clone() for name, value in model.state_dict().items()}
    rise = measure(model, lifted, data).rise
    found = repair_project(model, lifted, data, data, budget=1.0, max_directions=4, progress=False)
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())  # the original untouched
    assert rise > 0.15 and found.k >= 1 and measure(found.model, lifted, data).rise < 0.5 * rise
    assert [k for k, _ in found.curve] == list(range(len(found.curve))) and found.curve[found.k][1].rise < rise
    after = found.model.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed == {"classifier.weight", "classifier.bias"}  # the backbone bit for bit as it was
    found.model.save_pretrained(tmp_path)
    reloaded = transformers.AutoModelForImageClassification.from_pretrained(tmp_path)
    torch.testing.assert_close(reloaded(pixel_values=data.pixels[:2]).logits, found.model(pixel_values=data.pixels[:2]).logits)


def test_no_direction_is_kept_that_costs_more_than_the_budget(setting, lifted):
    model, _, data = setting
    found = repair_project(model, lifted, data, data, budget=-1.0, max_directions=4, progress=False)  # every cost is over
    assert found.k == 0 and found.model is model and len(found.curve) == 2


def test_project_is_one_of_the_repairs_and_a_classifier_that_is_not_linear_is_refused(setting, lifted):
    model, _, data = setting
    done = repair(model, lifted, data, how="project", progress=False)
    assert [a.how for a in done.attempts] == ["project"]
    changed = done.attempts[0].changed
    assert changed["directions"] >= 1 and changed["curve"][0]["directions"] == 0
    # the ridges tried, smallest first, the kept one among them with its curve
    tried = [entry["ridge"] for entry in changed["ridges"]]
    assert tried == list(RIDGES[: len(tried)]) and changed["ridge"] in tried
    assert changed["curve"] == next(entry["curve"] for entry in changed["ridges"] if entry["ridge"] == changed["ridge"])
    note = done.table()[1]["note"]
    assert (note is not None and f"through the ridge {changed['ridge']:g} (" in note) == (len(tried) > 1)
    deep = copy.deepcopy(model)
    deep.classifier = nn.Sequential(nn.Linear(model.config.hidden_size, 8), nn.ReLU(), nn.Linear(8, model.config.num_labels))
    with pytest.raises(UnsupportedModelError, match="not one linear layer"):
        projection(deep, lifted, data, 1)
    refused = repair(deep, lifted, data, how="project", progress=False)
    assert refused.chosen is None and "not one linear layer" in refused.attempts[0].refused


def test_a_classifier_without_bias_a_shortcut_that_moves_nothing_and_wrong_logits_are_refused(setting, lifted):
    model, region, data = setting
    unbiased = copy.deepcopy(model)
    unbiased.classifier = nn.Linear(model.config.hidden_size, model.config.num_labels, bias=False)
    with pytest.raises(UnsupportedModelError, match="no bias"):
        projection(unbiased, lifted, data, 1)
    nothing = Shortcut.of_direction(3, 2, torch.zeros(model.config.hidden_size), region.members, region.rest)
    with pytest.raises(UnsupportedModelError, match="does not move the classifier's input"):
        projection(model, nothing, data, 1)
    scaled = LogitsDoubled(copy.deepcopy(model))
    with pytest.raises(UnsupportedModelError, match="not the model's logits"):
        projection(scaled, lifted, data, 1)
    assert not scaled.inner.classifier._forward_pre_hooks  # the capture is removed after a refusal
    with pytest.raises(ValueError, match="two training images"):
        projection(model, lifted, Labelled(data.pixels[:1], data.labels[:1]), 1)


def _chosen_ridge(
    monkeypatch, rises: dict[float, float | None], before: float = 1.0, leads: dict[float, float] | None = None, lead: float = 0.5
):
    """``repair_project`` with each ridge's curve keeping one direction at the rise given
    (None: it keeps none), and, with ``leads``, the class leading by ``lead`` on the
    shortcut's own images before and each ridge's projection taking the share of it given;
    without, no lead to judge. Returns the ridge kept, its directions, the ridges tried and
    the shares of the lead they took."""
    import captum_gmar.repair.project as project

    monkeypatch.setattr(
        project, "projection", lambda *args, **kwargs: Projection(torch.eye(4), torch.zeros(4), torch.eye(4), torch.ones(4))
    )
    monkeypatch.setattr(project, "measure", lambda *args, **kwargs: Measurement(before, 0.9, {}))
    monkeypatch.setattr(project, "linear_classifier", lambda model: model)  # the "model" is its classifier
    folds: list[tuple[int, float]] = []
    monkeypatch.setattr(Projection, "fold", lambda self, classifier, k, ridge: folds.append((k, ridge)))
    model = nn.Linear(4, 3)

    def own(read: object, shortcut: object) -> OwnImages | None:  # a ridge's model is ("folded", ridge)
        if leads is None:
            return None
        gone = 0.0 if read is model else leads[read[1]]  # type: ignore[index]
        return OwnImages(0.3 + lead * (1 - gone), 0.3, 0.5, 0.5, 64, 64)

    monkeypatch.setattr(project, "own_images", own)
    order = iter(rises.items())  # the ridges are tried in turn

    def curve(model, shortcut, held_out, step, count, budget, unit, progress, seed, before):
        ridge, rise = next(order)
        if rise is None or before.rise <= 0:
            return 0, model, ((0, before),) if before.rise <= 0 else ((0, before), (1, Measurement(1.0, 0.5, {})))
        return 1, ("folded", ridge), ((0, before), (1, Measurement(rise, 0.9, {})))

    monkeypatch.setattr(project, "while_it_falls", curve)
    found = project.repair_project(model, None, None, None, ridges=tuple(rises))
    # the kept projection folded once more, through its ridge, into a copy; none kept: the model itself
    assert (folds == [(found.k, found.ridge)] and found.model is not model) if found.k else (not folds and found.model is model)
    assert found.curve == dict(found.curves)[found.ridge] and len(found.leads) == len(found.curves)
    return found.ridge, found.k, [ridge for ridge, _ in found.curves], [None if g is None else round(g, 6) for g in found.leads]


def test_a_larger_ridge_is_tried_while_the_rise_left_is_over_its_share_and_kept_where_nearer_zero(monkeypatch):
    import captum_gmar.repair.project as project

    def chosen(rises: dict[float, float | None], before: float = 1.0) -> tuple[float, int, list[float]]:
        ridge, k, tried, leads = _chosen_ridge(monkeypatch, rises, before)
        assert leads == [None] * len(tried)  # no lead to judge
        return ridge, k, tried

    left = project.LEFT
    assert chosen({0.1: left / 2, 1.0: 0.0, 10.0: 0.0}) == (0.1, 1, [0.1])  # near enough zero: no larger ridge
    assert chosen({0.1: 2 * left, 1.0: left / 2, 10.0: 0.0}) == (1.0, 1, [0.1, 1.0])  # the larger brought it near zero
    assert chosen({0.1: 2 * left, 1.0: 3 * left, 10.0: -left}) == (10.0, 1, [0.1, 1.0, 10.0])  # nearest zero, from below
    assert chosen({0.1: 2 * left, 1.0: -3 * left, 10.0: 0.0}) == (10.0, 1, [0.1, 1.0, 10.0])  # an overshoot is as far
    assert chosen({0.1: -2 * left, 1.0: left / 2}) == (1.0, 1, [0.1, 1.0])  # overshot by more than the share: tried further
    assert chosen({0.1: 2 * left, 1.0: 3 * left, 10.0: 4 * left}) == (0.1, 1, [0.1, 1.0, 10.0])  # none nearer: the smallest stands
    assert chosen({0.1: None, 1.0: 2 * left, 10.0: None}) == (1.0, 1, [0.1, 1.0, 10.0])  # the smallest over the budget
    assert chosen({0.1: None, 1.0: None}) == (0.1, 0, [0.1, 1.0])  # none within the budget: the model as it was
    assert chosen({0.1: 0.0, 1.0: 0.0}, before=-0.1) == (0.1, 0, [0.1])  # no rise to remove: one ridge, no step
    with pytest.raises(ValueError, match="one ridge"):
        project.repair_project("model", None, None, None, ridges=())


def test_a_larger_ridge_is_tried_while_the_lead_on_the_shortcuts_own_images_is_short_and_kept_where_it_takes_more(monkeypatch):
    from captum_gmar.repair import REACHES
    from captum_gmar.repair.project import LEFT

    def chosen(rises: dict[float, float | None], leads: dict[float, float]) -> tuple[float, int, list[float], list[float | None]]:
        return _chosen_ridge(monkeypatch, rises, leads=leads)

    short, enough = REACHES / 2, (1 + REACHES) / 2
    # the rise near zero and the lead taken: no larger ridge (as where there is no lead)
    assert chosen({0.1: 0.0, 1.0: 0.0}, {0.1: enough, 1.0: 1.0}) == (0.1, 1, [0.1], [enough])
    # the rise near zero, the lead short: the next ridge, kept where it takes more, and then done
    assert chosen({0.1: 0.0, 1.0: 0.0, 10.0: 0.0}, {0.1: short, 1.0: enough, 10.0: 1.0}) == (1.0, 1, [0.1, 1.0], [short, enough])
    # one that takes less, or whose rise is no longer near zero, is tried and not kept
    assert chosen({0.1: 0.0, 1.0: 0.0}, {0.1: short, 1.0: short / 2}) == (0.1, 1, [0.1, 1.0], [short, short / 2])
    assert chosen({0.1: 0.0, 1.0: 2 * LEFT}, {0.1: short, 1.0: 1.0}) == (0.1, 1, [0.1, 1.0], [short, 1.0])
    # the rise first: one nearer zero is kept whatever the lead, while the kept one's rise is not near
    assert chosen({0.1: 2 * LEFT, 1.0: 0.0}, {0.1: enough, 1.0: short}) == (1.0, 1, [0.1, 1.0], [enough, short])
    # a ridge that keeps no direction reads no lead
    assert chosen({0.1: None, 1.0: 0.0}, {1.0: enough}) == (1.0, 1, [0.1, 1.0], [None, enough])
    # the bar itself is reached; of two that take as much, the smaller ridge stands
    assert chosen({0.1: 0.0, 1.0: 0.0}, {0.1: REACHES, 1.0: 1.0}) == (0.1, 1, [0.1], [REACHES])
    assert chosen({0.1: 0.0, 1.0: 0.0, 10.0: 0.0}, {0.1: short, 1.0: short, 10.0: short}) == (0.1, 1, [0.1, 1.0, 10.0], [short] * 3)
    # the next ridge is decided by the projection kept, not by the last one tried
    assert chosen({0.1: 0.0, 1.0: 2 * LEFT, 10.0: 0.0}, {0.1: short, 1.0: 1.0, 10.0: enough}) == (
        10.0,
        1,
        [0.1, 1.0, 10.0],
        [short, 1.0, enough],
    )
    # while the kept rise is not near zero, a rise further from it is not kept for its lead
    assert chosen({0.1: 2 * LEFT, 1.0: 3 * LEFT, 10.0: 4 * LEFT}, {0.1: short, 1.0: 1.0, 10.0: 1.0})[:2] == (0.1, 1)
    # an overshoot (the images now below the rest) is as far from all of the lead as a shortfall
    over = 2 - short / 2  # further from all of it than short is
    assert chosen({0.1: 0.0, 1.0: 0.0, 10.0: 0.0}, {0.1: short, 1.0: over, 10.0: 1.05}) == (10.0, 1, [0.1, 1.0, 10.0], [short, over, 1.05])
    assert chosen({0.1: 0.0, 1.0: 0.0}, {0.1: short, 1.0: over})[:2] == (0.1, 1)


def test_a_lead_too_small_to_judge_or_no_rise_reads_no_lead_and_keeps_the_rise_rule(monkeypatch):
    from captum_gmar.repair import LEADS

    # the lead below LEADS before: as where there is none, one ridge (no pass over the images after it)
    assert _chosen_ridge(monkeypatch, {0.1: 0.0, 1.0: 0.0}, leads={0.1: 0.0, 1.0: 1.0}, lead=LEADS / 2) == (0.1, 1, [0.1], [None])
    # no rise to remove: one ridge, no step, no lead read
    assert _chosen_ridge(monkeypatch, {0.1: 0.0, 1.0: 0.0}, before=-0.1, leads={0.1: 0.0, 1.0: 1.0}) == (0.1, 0, [0.1], [None])


def test_every_ridge_tried_is_the_one_folded(setting, lifted, monkeypatch):
    import captum_gmar.repair.project as project

    model, _, data = setting
    monkeypatch.setattr(project, "LEFT", -1.0)  # never near enough: every ridge tried
    folded: list[float] = []
    fold = Projection.fold
    monkeypatch.setattr(Projection, "fold", lambda self, classifier, k, ridge: (folded.append(ridge), fold(self, classifier, k, ridge)))
    found = repair_project(model, lifted, data, data, budget=1.0, max_directions=2, progress=False, ridges=(0.1, 1e6))
    assert [ridge for ridge, _ in found.curves] == [0.1, 1e6] and set(folded) == {0.1, 1e6}
    # the two ridges' curves differ: the ridge reached the fold
    assert found.curves[0][1][1][1].rise != found.curves[1][1][1][1].rise


def test_the_note_names_the_ridge_kept_or_that_none_kept_a_direction():
    from captum_gmar.repair import Attempt, _ridge_note

    def note(directions: int, ridge: float, tried: list[float]) -> str | None:
        changed = {"directions": directions, "ridge": ridge, "ridges": [{"ridge": r, "curve": []} for r in tried]}
        return _ridge_note(Attempt("project", None, None, 0.0, changed))

    assert note(1, 0.1, [0.1]) is None  # one ridge: nothing to tell apart
    assert note(2, 10.0, [0.1, 1.0, 10.0]) == "through the ridge 10 (tried 0.1, 1, 10)"
    assert note(0, 0.1, [0.1, 1.0, 10.0]) == "no ridge kept a direction (tried 0.1, 1, 10)"


def test_against_a_texture_drawn_afresh_the_directions_go_by_the_rises_root_mean_square(setting):
    model, region, data = setting
    textured = Shortcut.of_texture(3, region.members, region.rest)  # the bright corner, with the donors' spread drawn afresh
    assert textured.intervention.drawn
    done = repair(model, textured, data, how="project", budget=1.0, progress=False)  # no step refused for its cost
    curve = done.attempts[0].changed["curve"]
    assert curve[0]["rise"] > 0  # a rise to remove, so steps were taken by the rule
    assert all(point["rise_rms"] >= abs(point["rise"]) - 1e-9 for point in curve)  # repair.json keeps it, and it holds the mean
    k = done.attempts[0].changed["directions"]
    kept = [point["rise_rms"] for point in curve[: k + 1]]
    assert all(now <= (1 - RMS_FALLS) * last for last, now in zip(kept, kept[1:]))  # each step kept fell by a tenth
    if len(curve) > k + 1:  # the step that stopped it fell by less
        assert curve[k + 1]["rise_rms"] > (1 - RMS_FALLS) * curve[k]["rise_rms"]
