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
    """40 training passes in one thread, 5 rounds of GMAR and AttnLRP in another, overlapping
    however the threads are scheduled. As a user's loop would, a lock keeps each optimizer step
    out of an explanation (one that overlaps a step is refused: the test below), so every call
    completes and the counts are fixed: what is asserted holds under any interleaving."""
    model = load_tiny(VIT)  # fine-tuned in eval mode (no dropout), as the explanation needs
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    explainers = [GMARAttribution(model), AttnLRP(model)]
    x, labels = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2)), torch.tensor([0, 1, 2, 3])
    started, between_steps = threading.Barrier(2), threading.Lock()
    steps, explained, errors = [], [], []

    def train() -> None:
        started.wait()
        try:
            for _ in range(40):
                weights = copy.deepcopy(model.state_dict())
                steps.append((weights, parameter_grads(model, x, labels)))
                if step:
                    with between_steps:
                        optimizer.step()
        except Exception as error:  # what the old code raised: the loss did not require grad
            errors.append(error)

    def explain() -> None:
        started.wait()
        try:
            for _ in range(5):
                for index, explainer in enumerate(explainers):
                    with between_steps:  # the weights stay those read here for the whole call
                        weights = copy.deepcopy(model.state_dict())
                        explained.append((index, weights, explainer.attribute(images, target=1)))
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=train), threading.Thread(target=explain)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert (len(steps), len(explained)) == (40, 10)
    solo = copy.deepcopy(model)
    for weights, grads in steps:
        assert all(grad is not None for grad in grads)
        solo.load_state_dict(weights)
        for got, want in zip(grads, parameter_grads(solo, x, labels)):
            torch.testing.assert_close(got, want)
    for index, weights, got in explained:  # every map is the one its weights give alone
        solo.load_state_dict(weights)
        torch.testing.assert_close(got, type(explainers[index])(solo).attribute(images, target=1))


def with_dropout(load_tiny, **config) -> torch.nn.Module:
    """The tiny ViT (or DINOv2 where ``drop_path_rate`` is given) with dropout or stochastic depth, in eval mode."""
    name = "Dinov2ForImageClassification" if "drop_path_rate" in config else VIT
    model = load_tiny(name)
    return type(model).from_pretrained(model.name_or_path, attn_implementation="sdpa", **config).eval()


class BatchNormHead(torch.nn.Module):
    """A user's head with batch norm on the tiny ViT's class token."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.backbone = model.vit
        self.norm = torch.nn.BatchNorm1d(model.config.hidden_size)
        self.classifier = torch.nn.Linear(model.config.hidden_size, 3)
        self.num_labels = 3

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.norm(self.backbone(pixel_values=pixel_values).last_hidden_state[:, 0]))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "make, named",
    [
        (lambda load: with_dropout(load, hidden_dropout_prob=0.3), r"vit\.embeddings\.dropout \(dropout p=0\.3\)"),
        (
            lambda load: with_dropout(load, attention_probs_dropout_prob=0.3),
            r"attention \(dropout (attention_dropout|dropout_prob)=0\.3\)",
        ),  # the attribute in transformers 5, 4.57
        (lambda load: with_dropout(load, drop_path_rate=0.2), r"drop_path \(stochastic depth drop_prob=0\.\d+\)"),
        (lambda load: BatchNormHead(load(VIT)), r"norm \(batch norm"),
    ],
    ids=["dropout", "attention-dropout", "stochastic-depth", "batch-norm"],
)
def test_training_mode_that_changes_the_output_is_refused_before_any_pass_naming_the_module(load_tiny, images, method, make, named):
    model = make(load_tiny)
    explainer = method(model)
    model.train()
    passes = []
    handle = model.register_forward_pre_hook(lambda module, args: passes.append(1))
    with pytest.raises(ValueError, match=rf"^\w+ is in training mode, where .*{named}.*call model\.eval\(\) first, or explain a copy"):
        explainer.attribute(images, target=1)
    handle.remove()
    assert not passes
    assert all(m.training for m in model.modules()) and all(p.requires_grad for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("method", METHODS)
def test_training_mode_that_changes_nothing_is_explained_as_eval_mode_would(load_tiny, images, method):
    model = load_tiny(VIT)  # no dropout, no stochastic depth: training mode computes what eval mode computes
    expected = method(model).attribute(images, target=1)
    model.train()
    torch.testing.assert_close(method(model).attribute(images, target=1), expected)
    assert all(m.training for m in model.modules())  # left as it was


def test_a_mode_switch_during_the_calls_never_changes_a_map_silently(load_tiny, images):
    """Another thread toggles training mode while maps are made: each map is eval mode's or
    the call is refused; none is changed by dropout without a word. A third of the calls
    start in training mode and a third in eval mode with the toggling thread held (refused,
    and eval mode's map, whatever the scheduling); the rest race it."""
    model = with_dropout(load_tiny, hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    gmar = GMARAttribution(model)
    expected = gmar.attribute(images, target=1)
    done, hold = threading.Event(), threading.Lock()

    def toggle() -> None:
        while not done.is_set():
            for mode in (True, False):
                with hold:
                    model.train(mode)
                done.wait(0.0005)

    def outcome() -> str:
        try:
            got = gmar.attribute(images, target=1)
        except ValueError as error:
            assert "training mode" in str(error)
            return "refused"
        torch.testing.assert_close(got, expected)  # never a dropout's map
        return "eval"

    toggler = threading.Thread(target=toggle)
    toggler.start()
    outcomes = []
    try:
        for call in range(60):
            if call % 3 == 2:
                outcomes.append(outcome())
                continue
            with hold:
                model.train(call % 3 == 0)
                outcomes.append(outcome())
    finally:
        done.set()
        toggler.join()
    assert outcomes[0::3] == ["refused"] * 20 and outcomes[1::3] == ["eval"] * 20


@pytest.mark.parametrize("method", [GMARAttribution, AttnLRP])
def test_a_switch_to_training_mode_or_a_weight_change_during_the_pass_is_reported(load_tiny, images, method):
    model = with_dropout(load_tiny, hidden_dropout_prob=0.3)
    explainer = method(model)

    def in_another_thread(change):
        def hook(module, args):
            other = threading.Thread(target=change)
            other.start()
            other.join()

        return explainer.vit.blocks[1].attention.register_forward_pre_hook(hook)

    handle = in_another_thread(model.train)
    with pytest.raises(
        ValueError, match="ran a dropout with p=0.3 in training mode during the pass.*is in training mode now.*Call model.eval"
    ):
        explainer.attribute(images, target=1)
    handle.remove()
    model.eval()
    handle = in_another_thread(torch.no_grad()(lambda: model.classifier.weight.add_(0.1)))  # an optimizer step
    with pytest.raises(RuntimeError, match="weights changed during the call .*explain a copy"):
        explainer.attribute(images, target=1)
    handle.remove()
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_a_random_draw_in_eval_mode_is_reported_as_what_it_is_and_where(load_tiny, images):
    model = load_tiny(VIT)  # in eval mode: no module's training mode is in play

    def noisy_hook(module, args, output):  # the user's own noise, not training mode's
        return output + 0.01 * torch.randn_like(output)

    explainer = GMARAttribution(model)
    noisy = explainer.vit.blocks[1].output  # the heads' output projection, named by the transformers version
    name = next(name for name, module in model.named_modules() if module is noisy)
    handle = noisy.register_forward_hook(noisy_hook)
    try:
        with pytest.raises(ValueError) as refused:
            explainer.attribute(images, target=1)
    finally:
        handle.remove()
    message = str(refused.value)
    assert "a random draw (randn_like) during the pass" in message
    assert "noisy_hook" in message and "test_model_state.py" in message and f"'{name}'" in message
    assert "training mode" not in message and "\n" not in message
