"""The projection, then the classifier fitted again blind to its directions (``repair --how refit``)."""

from __future__ import annotations

import pytest
import torch
import transformers
from torch import nn

import captum_gmar.repair.refit as refit_module
from captum_gmar.repair import Labelled, OwnImages, measure, repair
from captum_gmar.repair.classifier import drawn_inputs
from captum_gmar.repair.refit import RIDGES, repair_refit


def _leftover(model: nn.Module, directions: torch.Tensor) -> float:
    """The classifier weight's largest part along ``directions``, as a share of its largest entry."""
    weight = model.classifier.weight.detach().double()
    return float((weight @ directions.double().T).abs().max() / weight.abs().max())


def test_the_refit_starts_from_the_projection_stays_blind_to_it_and_reloads(setting, lifted, tmp_path):
    model, _, data = setting
    before = {name: value.clone() for name, value in model.state_dict().items()}
    rise = measure(model, lifted, data).rise
    found = repair_refit(model, lifted, data, data, budget=1.0, progress=False)
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())  # the original untouched
    projected = found.projected
    assert projected.k >= 1 and projected.directions.shape == (projected.k, model.config.hidden_size)
    assert found.ridge in RIDGES and not torch.equal(found.model.classifier.weight, projected.model.classifier.weight)
    assert _leftover(projected.model, projected.directions) < 1e-5 and _leftover(found.model, projected.directions) < 1e-5
    assert rise > 0.15 and measure(found.model, lifted, data).rise < 0.5 * rise
    changed = {name for name, value in found.model.state_dict().items() if not torch.equal(before[name], value)}
    assert changed == {"classifier.weight", "classifier.bias"}  # the backbone bit for bit as it was
    found.model.save_pretrained(tmp_path)
    reloaded = transformers.AutoModelForImageClassification.from_pretrained(tmp_path)
    torch.testing.assert_close(reloaded(pixel_values=data.pixels[:2]).logits, found.model(pixel_values=data.pixels[:2]).logits)


def test_every_ridge_is_fitted_and_the_nearest_the_original_on_the_held_out_images_kept(setting, lifted):
    model, _, data = setting
    found = repair_refit(model, lifted, data, data, budget=1.0, progress=False)
    assert [ridge for ridge, _, _ in found.fits] == [None, *RIDGES]  # the fold, then every ridge, strongest first
    eligible = [(far, ridge) for ridge, far, misses in found.fits[1:] if not misses]
    fold = found.fits[0][1]
    nearer = [pair for pair in eligible if pair[0] < fold]
    assert found.ridge == (min(nearer)[1] if nearer else None)


def test_a_fit_that_misses_the_class_on_the_shortcuts_own_images_is_not_kept(setting, lifted, monkeypatch):
    model, _, data = setting
    calls: list[int] = []

    def read(candidate, shortcut):  # the original, the fold, then each ridge in turn: the second ridge misses them
        calls.append(1)
        called = 0.1 if len(calls) == 4 else 0.9
        return OwnImages(called, 0.5, called, 0.9, 64, 64, True)

    monkeypatch.setattr(refit_module, "own_images", read)
    distances = iter([0.5, 0.4, 0.1, 0.3, 0.35])  # the fold, then each ridge: the one that misses the nearest
    monkeypatch.setattr(refit_module, "distance", _scripted(refit_module.distance, distances))
    found = repair_refit(model, lifted, data, data, budget=1.0, progress=False)
    assert [misses for _, _, misses in found.fits] == [False, False, True, False, False] and found.ridge == RIDGES[2]


def _scripted(distance, held_out):
    """``distance`` for the fits; the next of ``held_out`` for each held-out reading (no gradient)."""

    def scripted(logits, target, multi_label):
        return distance(logits, target, multi_label) if torch.is_grad_enabled() else torch.tensor(next(held_out))

    return scripted


def test_the_images_that_carry_the_shortcut_are_left_out(setting, lifted, monkeypatch):
    model, _, data = setting
    carrying = torch.arange(len(data)) < 4
    monkeypatch.setattr(refit_module, "carriers", lambda model, shortcut, images: carrying)
    seen: list[tuple[Labelled, float]] = []

    def spy(vit, classifier, shortcut, train, batch_size, pasted_share, *args):
        seen.append((train, pasted_share))
        return drawn_inputs(vit, classifier, shortcut, train, batch_size, pasted_share, *args)

    monkeypatch.setattr(refit_module, "drawn_inputs", spy)
    found = repair_refit(model, lifted, data, data, budget=1.0, progress=False)
    assert found.trained_on == len(data) - 4 and len(seen) == 1
    ((train, pasted_share),) = seen
    assert torch.equal(train.pixels, data.pixels[4:]) and torch.equal(train.labels, data.labels[4:])
    assert pasted_share == 0.0  # nothing put on: fitted to the original's outputs on clean images


def test_where_nothing_is_projected_nothing_is_fitted(setting, lifted):
    model, _, data = setting
    found = repair_refit(model, lifted, data, data, budget=-1.0, progress=False)  # every direction costs too much
    assert found.projected.k == 0 and found.model is model and found.trained_on == 0 and found.ridge is None


def test_each_fit_reads_every_input_at_once_and_two_runs_agree(setting, lifted, monkeypatch):
    model, _, data = setting
    rows: list[int] = []
    distance = refit_module.distance

    def counted(logits, target, multi_label):
        if torch.is_grad_enabled():  # a fit's loss, not a held-out reading
            rows.append(len(logits))
        return distance(logits, target, multi_label)

    monkeypatch.setattr(refit_module, "distance", counted)
    first = repair_refit(model, lifted, data, data, budget=1.0, progress=False)
    # every evaluation of every fit over the whole pool: 4 draws per image, in batches of 64
    pool = -(-4 * first.trained_on // 64) * 64
    assert rows and set(rows) == {pool}
    second = repair_refit(model, lifted, data, data, budget=1.0, progress=False)
    assert first.fits == second.fits
    for name, value in first.model.state_dict().items():
        torch.testing.assert_close(value, second.model.state_dict()[name], atol=0, rtol=0)


def test_no_held_out_image_to_judge_the_fits_on_is_refused(setting, lifted):
    model, _, data = setting
    none_counted = Labelled(data.pixels, data.labels, torch.zeros(len(data), dtype=torch.bool))
    with pytest.raises(ValueError, match="held-out images"):
        repair_refit(model, lifted, data, none_counted, budget=1.0, progress=False)


def test_refit_is_one_of_the_repairs_and_says_what_it_changed(setting, lifted):
    model, _, data = setting
    done = repair(model, lifted, data, how="refit", progress=False)
    assert [a.how for a in done.attempts] == ["refit"] and done.chosen is done.attempts[0]
    changed = done.attempts[0].changed
    assert changed["directions"] >= 1 and 0 < changed["trained_on"] <= len(data)
    assert changed["fits"][0]["ridge"] is None and changed["fit_ridge"] in (None, *RIDGES)
