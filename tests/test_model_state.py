"""Other threads are untouched by an explanation: a training thread keeps its parameter
gradients, a model in training mode is refused (its mode is every thread's), and weights
changed during a call are reported."""

from __future__ import annotations

import copy
import threading

import pytest
import torch
import torch.nn.functional as F

from captum_gmar import CPLRP, AttentionRollout, AttnLRP, GMARAttribution

VIT = "ViTForImageClassification"
METHODS = [GMARAttribution, AttentionRollout, AttnLRP, CPLRP]


def parameter_grads(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor | None]:
    """One training pass: the cross-entropy's gradient for every parameter (``None`` where none came)."""
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(pixel_values=x).logits, labels).backward()
    return [None if p.grad is None else p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("step", [False, True], ids=["accumulating", "stepping"])
def test_a_training_thread_keeps_its_gradients_while_another_thread_explains(load_tiny, images, step):
    model = load_tiny(VIT)  # fine-tuned in eval mode (no dropout), as the explanation needs
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    explainers = [GMARAttribution(model), AttnLRP(model)]
    expected = [explainer.attribute(images, target=1) for explainer in explainers]
    x, labels = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2)), torch.tensor([0, 1, 2, 3])
    started, done = threading.Barrier(2), threading.Event()
    steps, explained, errors = [], [], []

    def train() -> None:
        started.wait()
        try:
            for _ in range(40):
                weights = copy.deepcopy(model.state_dict())
                steps.append((weights, parameter_grads(model, x, labels)))
                if step:
                    optimizer.step()
        except Exception as error:  # what the old code raised: the loss did not require grad
            errors.append(error)
        finally:
            done.set()

    def explain() -> None:
        started.wait()
        while not done.is_set():
            for index, explainer in enumerate(explainers):
                try:
                    explained.append((index, explainer.attribute(images, target=1)))
                except RuntimeError as error:
                    if not (step and "weights changed during the call" in str(error)):
                        errors.append(error)

    threads = [threading.Thread(target=train), threading.Thread(target=explain)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(steps) == 40 and explained, (len(steps), len(explained))
    solo = copy.deepcopy(model)
    for weights, grads in steps:
        assert all(grad is not None for grad in grads)
        solo.load_state_dict(weights)
        for got, want in zip(grads, parameter_grads(solo, x, labels)):
            torch.testing.assert_close(got, want)
    if not step:  # the weights never changed: every map is the one computed alone
        for index, got in explained:
            torch.testing.assert_close(got, expected[index])


@pytest.mark.parametrize("method", METHODS)
def test_a_model_in_training_mode_is_refused_before_any_pass_and_left_as_it_was(load_tiny, images, method):
    model = load_tiny(VIT)
    explainer = method(model)
    model.train()
    passes = []
    handle = model.register_forward_pre_hook(lambda module, args: passes.append(1))
    with pytest.raises(ValueError, match=r"^ViTForImageClassification is in training mode .*call model\.eval\(\) first, or explain a copy"):
        explainer.attribute(images, target=1)
    handle.remove()
    assert not passes
    assert all(m.training for m in model.modules()) and all(p.requires_grad for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    torch.testing.assert_close(
        method(copy.deepcopy(model).eval()).attribute(images, target=1), method(model.eval()).attribute(images, target=1)
    )


@pytest.mark.parametrize("method", [GMARAttribution, AttnLRP])
def test_a_switch_to_training_mode_or_a_weight_change_during_the_pass_is_reported(load_tiny, images, method):
    model = load_tiny(VIT)
    explainer = method(model)

    def in_another_thread(change):
        def hook(module, args):
            other = threading.Thread(target=change)
            other.start()
            other.join()

        return explainer.vit.blocks[1].attention.register_forward_pre_hook(hook)

    handle = in_another_thread(model.train)
    with pytest.raises(ValueError, match="switched to training mode during the pass.*call model.eval"):
        explainer.attribute(images, target=1)
    handle.remove()
    model.eval()
    handle = in_another_thread(torch.no_grad()(lambda: model.classifier.weight.add_(0.1)))  # an optimizer step
    with pytest.raises(RuntimeError, match="weights changed during the call .*explain a copy"):
        explainer.attribute(images, target=1)
    handle.remove()
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
