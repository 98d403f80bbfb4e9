"""The classifier retrained alone on the backbone's features (``repair --how classifier``)."""

from __future__ import annotations

import copy

import pytest
import torch
import transformers
from repair_helpers import LogitsDoubled
from torch import nn

from captum_gmar.errors import UnsupportedModelError
from captum_gmar.repair import measure, repair
from captum_gmar.repair.classifier import classifier_name, repair_classifier


def test_the_classifier_is_the_one_module_outside_the_vision_transformer(setting):
    model = setting[0]
    assert classifier_name(model) == "classifier"
    two = copy.deepcopy(model)
    two.extra = nn.Linear(2, 2)  # a second module outside the backbone: which one classifies is unknown
    with pytest.raises(UnsupportedModelError, match=r"several modules \(classifier, extra\)"):
        classifier_name(two)
    none = copy.deepcopy(model)
    none.classifier = nn.Identity()
    with pytest.raises(UnsupportedModelError, match="no parameters outside its vision transformer"):
        classifier_name(none)


def test_only_the_classifier_changes_and_the_copy_reloads(setting, tmp_path):
    model, shortcut, data = setting
    before = {name: value.clone() for name, value in model.state_dict().items()}
    repaired = repair_classifier(model, shortcut, data, steps=5, batch_size=8, passes=2, progress=False)
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())  # the original untouched
    after = repaired.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(name.startswith("classifier.") for name in changed)  # the backbone bit for bit as it was
    assert not repaired.training
    repaired.save_pretrained(tmp_path)
    reloaded = transformers.AutoModelForImageClassification.from_pretrained(tmp_path)
    torch.testing.assert_close(reloaded(pixel_values=data.pixels[:2]).logits, repaired(pixel_values=data.pixels[:2]).logits)


def test_retraining_the_classifier_lowers_the_rise_and_is_one_of_the_repairs(setting, lifted):
    model, _, data = setting
    shortcut = lifted
    rise = measure(model, shortcut, data).rise
    repaired = repair_classifier(model, shortcut, data, steps=100, batch_size=16, pasted_share=0.5, progress=False)
    assert rise > 0.15 and measure(repaired, shortcut, data).rise < 0.5 * rise
    done = repair(model, shortcut, data, how="classifier", steps=2, progress=False)
    assert [a.how for a in done.attempts] == ["classifier"] and done.chosen is done.attempts[0]


def test_a_classifier_whose_output_is_not_the_logits_is_refused(setting):
    model, shortcut, data = setting

    wrapped = LogitsDoubled(model)
    with pytest.raises(UnsupportedModelError, match="not the model's logits"):
        repair_classifier(wrapped, shortcut, data, steps=1, batch_size=4, progress=False)


def test_a_retry_with_fewer_steps_reuses_the_inputs_and_stops_the_same_path_earlier(setting, monkeypatch):
    import captum_gmar.repair.classifier as classifier

    model, shortcut, data = setting
    runs = []
    computed = classifier.drawn_inputs
    monkeypatch.setattr(classifier, "drawn_inputs", lambda *args: runs.append(1) or computed(*args))
    repair_classifier(model, shortcut, data, steps=6, batch_size=8, passes=1, progress=False)
    shorter = repair_classifier(model, shortcut, data, steps=3, batch_size=8, passes=1, progress=False)
    assert len(runs) == 1  # the backbone ran once for both
    classifier._POOLS.clear()
    fresh = repair_classifier(model, shortcut, data, steps=3, batch_size=8, passes=1, progress=False)
    assert len(runs) == 2
    assert all(torch.equal(a, b) for a, b in zip(shorter.state_dict().values(), fresh.state_dict().values()))
    repair_classifier(model, shortcut, data, steps=3, batch_size=8, passes=2, progress=False)  # other draws: computed again
    assert len(runs) == 3
    changed = copy.deepcopy(model)
    repair_classifier(changed, shortcut, data, steps=3, batch_size=8, passes=2, progress=False)
    with torch.no_grad():
        changed.vit.embeddings.patch_embeddings.projection.weight.mul_(1.01)  # the model changed in place since
    repair_classifier(changed, shortcut, data, steps=3, batch_size=8, passes=2, progress=False)
    assert len(runs) == 5
