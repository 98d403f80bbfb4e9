"""AttnLRP and CP-LRP on every supported model: conservation, equality with ``lxt``'s rules,
sdpa against eager, Captum integration, threads, the model's state and bad inputs."""

from __future__ import annotations

import contextlib
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import torch.nn.functional as F
import transformers
from captum.metrics import infidelity
from lxt_reference import lxt_relevance
from tiny_models import MODEL_NAMES, TINY_MODELS, ZERO_SHOT_MODELS, bias_free, images64, randomise_
from torch.overrides import TorchFunctionMode

from captum_gmar import CPLRP, AttnLRP
from captum_gmar.errors import NonFiniteError
from captum_gmar.methods.lrp import patch_relevance
from captum_gmar.vit.model import as_vision_transformer
from captum_gmar.vit.model_state import evaluating, frozen_parameters
from captum_gmar.vit.propagation import relevance_rules

TARGETS = torch.tensor([0, 3, 1])
METHODS = [AttnLRP, CPLRP]


def tiny(name: str, attn: str) -> torch.nn.Module:
    """A seeded tiny model built with ``attn`` (4.57's BEiT picks its attention class when built)."""
    torch.manual_seed(0)
    model = getattr(transformers, name)._from_config(TINY_MODELS[name](), attn_implementation=attn)
    return randomise_(model).eval()


def target_logits(model_logits, x, targets) -> torch.Tensor:
    with torch.no_grad():
        return model_logits(x).gather(1, targets.view(-1, 1)).squeeze(1)


class SoftmaxAbsorption(TorchFunctionMode):
    """Per example, the relevance the attention softmaxes absorb under Gradient x Input:
    ``sum(p * dL/dp) - sum(s * dL/ds)`` over every softmax ``p = softmax(s)``."""

    def __init__(self) -> None:
        super().__init__()
        self.pairs: list[tuple[torch.Tensor, torch.Tensor, dict]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if func in (F.softmax, torch.softmax, torch.Tensor.softmax) and args[0].requires_grad:
            grads: dict = {}
            args[0].register_hook(lambda g, grads=grads: grads.__setitem__("in", g))
            result.register_hook(lambda g, grads=grads: grads.__setitem__("out", g))
            self.pairs.append((args[0].detach(), result.detach(), grads))
        return result

    def absorbed(self) -> torch.Tensor:
        return sum((p * g["out"]).flatten(1).sum(1) - (s * g["in"]).flatten(1).sum(1) for s, p, g in self.pairs if "out" in g)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n != "TimmWrapperForImageClassification"])
def test_cplrp_conserves_the_target_logit_without_biases(name, attn):
    model = bias_free(tiny(name, attn))
    x = images64()
    method = CPLRP(model)
    relevance = method.attribute(x, target=TARGETS)
    torch.testing.assert_close(relevance.double().sum((1, 2, 3)), target_logits(method.forward_func, x, TARGETS), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["ViTForImageClassification", "Dinov2WithRegistersForImageClassification", "BeitForImageClassification"])
def test_attnlrp_conserves_what_its_softmaxes_do_not_absorb(name):
    model = bias_free(tiny(name, "eager"))
    x = images64()
    method = AttnLRP(model)
    with SoftmaxAbsorption() as softmaxes:
        relevance = method.attribute(x, target=TARGETS)
    absorbed = softmaxes.absorbed()
    assert len(softmaxes.pairs) == model.config.num_hidden_layers and absorbed.abs().max() > 1e-4  # it does absorb
    expected = target_logits(method.forward_func, x, TARGETS) - absorbed
    torch.testing.assert_close(relevance.double().sum((1, 2, 3)), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("method, variant", [(AttnLRP, "attnlrp"), (CPLRP, "cplrp")])
def test_equals_lxts_rules_on_a_vit(method, variant):
    model = tiny("ViTForImageClassification", "eager").double()
    x = images64()
    expected = lxt_relevance(model, x, TARGETS, variant)
    got = method(model).attribute(x, target=TARGETS)
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-6)
    assert expected.abs().max() > 1e-3  # not vacuous


def test_the_gamma_rule_keeps_cplrp_conservative_and_changes_the_map():
    model = bias_free(tiny("ViTForImageClassification", "sdpa"))
    x = images64()
    plain = CPLRP(model).attribute(x, target=TARGETS)
    gamma = CPLRP(model, gamma=0.25)
    boosted = gamma.attribute(x, target=TARGETS)
    torch.testing.assert_close(boosted.double().sum((1, 2, 3)), target_logits(gamma.forward_func, x, TARGETS), rtol=0, atol=1e-4)
    assert not torch.allclose(boosted, plain, atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_family_sdpa_equals_eager(load_tiny, images, name, method):
    eager = method(load_tiny(name, "eager")).attribute(images, target=TARGETS)
    sdpa = method(load_tiny(name, "sdpa")).attribute(images, target=TARGETS)
    assert sdpa.shape == images.shape and sdpa.dtype == torch.float32
    assert torch.isfinite(sdpa).all() and sdpa.abs().sum() > 0
    # sdpa's fused kernel rounds otherwise than eager's softmax, and relevance propagation carries
    # it on: up to 4e-4 of the map's largest value for DINOv2 on torch 2.4 (56 of 9,216 values)
    torch.testing.assert_close(sdpa, eager, rtol=1e-3, atol=1e-3 * eager.abs().max().item())


@pytest.mark.parametrize("name", list(ZERO_SHOT_MODELS))
@pytest.mark.parametrize("method", METHODS)
def test_zero_shot_prompts_conserve_the_image_text_logit(tiny_model_dirs, name, method):
    ids = torch.randint(3, 64, (4, 6), generator=torch.Generator().manual_seed(2))
    model = bias_free(getattr(transformers, name).from_pretrained(tiny_model_dirs[name]))
    # the text tower in float32: 4.57's CLIP text model cannot build its causal mask in float64
    model.text_model.float()
    if hasattr(model, "text_projection"):
        model.text_projection.float()
    x = images64()
    explainer = method(model, text={"input_ids": ids})
    relevance = explainer.attribute(x, target=TARGETS)
    logits = target_logits(explainer.forward_func, x, TARGETS)
    if method is CPLRP:  # the embedding's norm is held constant, so the logit is conserved
        torch.testing.assert_close(relevance.double().sum((1, 2, 3)), logits, rtol=0, atol=1e-5)
    assert relevance.abs().sum() > 0


def test_patches_are_the_sum_over_each_patch(load_tiny, images):
    method = AttnLRP(load_tiny("DeiTForImageClassification"))
    full = method.attribute(images, target=TARGETS)
    patches = method.attribute(images, target=TARGETS, output="patches")
    assert patches.shape == (3, 4, 4)
    torch.testing.assert_close(patches, patch_relevance(full, (8, 8)))
    torch.testing.assert_close(patches[:, 1, 2], full[:, :, 8:16, 16:24].sum((1, 2, 3)))


def test_non_square_images_and_leftover_pixels(load_tiny):
    method = CPLRP(load_tiny("Dinov2ForImageClassification"))
    x = torch.randn(2, 3, 44, 27)  # 5 x 3 patches of 8; the last 4 rows and 3 columns are never read
    relevance = method.attribute(x, target=1)
    assert relevance.shape == x.shape
    assert (relevance[..., 40:, :] == 0).all() and (relevance[..., 24:] == 0).all()
    assert method.attribute(x, target=1, output="patches").shape == (2, 5, 3)


def test_internal_batch_size_and_tuples_and_predicted_class(load_tiny, images):
    model = load_tiny("ViTForImageClassification")
    method = AttnLRP(model)
    whole = method.attribute(images, target=TARGETS)
    torch.testing.assert_close(method.attribute(images, target=TARGETS, internal_batch_size=2), whole)
    (as_tuple,) = method.attribute((images,), target=TARGETS)
    torch.testing.assert_close(as_tuple, whole)
    predicted = model(pixel_values=images).logits.argmax(-1)
    torch.testing.assert_close(method.attribute(images), method.attribute(images, target=predicted))


def test_dinov3_user_head_conserves():
    from tiny_models import DinoV3Classifier

    torch.manual_seed(0)
    config = transformers.DINOv3ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64, num_register_tokens=2
    )
    model = bias_free(DinoV3Classifier(randomise_(transformers.DINOv3ViTModel(config)), num_labels=5))
    x = images64()
    method = CPLRP(model)
    torch.testing.assert_close(
        method.attribute(x, target=TARGETS).double().sum((1, 2, 3)), target_logits(method.forward_func, x, TARGETS), rtol=0, atol=1e-5
    )


def test_captum_metrics_and_names(load_tiny, images):
    method = CPLRP(load_tiny("ViTForImageClassification"))
    relevance = method.attribute(images, target=TARGETS)

    def perturb(inputs):
        noise = 0.01 * torch.randn_like(inputs)
        return noise, inputs - noise

    score = infidelity(method.forward_func, perturb, images, relevance, target=TARGETS)
    assert score.shape == (3,) and torch.isfinite(score).all()
    assert (AttnLRP.get_name(), CPLRP.get_name()) == ("AttnLRP", "CP-LRP")


def test_the_model_is_restored_and_runs_normally_afterwards(load_tiny, images):
    model = load_tiny("ViTForImageClassification")
    before = {name: p.clone() for name, p in model.state_dict().items()}
    AttnLRP(model).attribute(images, target=1)
    assert not any(m.training for m in model.modules()) and all(p.requires_grad and p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(torch.equal(before[name], p) for name, p in model.state_dict().items())
    x = images.clone().requires_grad_(True)
    model(pixel_values=x).logits[:, 1].sum().backward()  # plain gradient: no rule left behind
    plain = x.grad.clone()
    assert not torch.allclose(plain * images, AttnLRP(model).attribute(images, target=1), atol=1e-6)
    x.grad = None
    model(pixel_values=x).logits[:, 1].sum().backward()  # after a second call too
    torch.testing.assert_close(x.grad, plain)


def test_calls_from_threads_equal_sequential_calls_and_other_threads_run_plainly(load_tiny, images):
    model = load_tiny("ViTForImageClassification")
    expected = CPLRP(model).attribute(images, target=1)
    other = images.flip(0).clone().requires_grad_(True)
    model(pixel_values=other).logits[:, 1].sum().backward()
    plain = other.grad.clone()
    start = threading.Barrier(3)

    def explain():
        start.wait()
        return [CPLRP(model).attribute(images, target=1) for _ in range(5)]

    def plain_gradient():
        start.wait()
        grads = []
        for _ in range(5):
            x = other.detach().clone().requires_grad_(True)
            model(pixel_values=x).logits[:, 1].sum().backward()
            grads.append(x.grad)
        return grads

    with ThreadPoolExecutor(3) as pool:
        explained = [pool.submit(explain) for _ in range(2)]
        gradients = pool.submit(plain_gradient)
        for future in explained:
            for got in future.result():
                torch.testing.assert_close(got, expected)
        for got in gradients.result():
            torch.testing.assert_close(got, plain)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(gamma=-0.1), ValueError, "gamma must be a number >= 0"),
        (dict(gamma="0.1"), ValueError, "gamma must be a number >= 0"),
        (dict(gamma=float("nan")), ValueError, "gamma must be a number >= 0"),
    ],
)
def test_bad_options(load_tiny, kwargs, error, match):
    with pytest.raises(error, match=match):
        AttnLRP(load_tiny("ViTForImageClassification"), **kwargs)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda m, x: m.attribute(x[0]), ValueError, "4-D"),
        (lambda m, x: m.attribute(x, target=9), ValueError, "out of range"),
        (lambda m, x: m.attribute(x, output="pixels"), ValueError, "output must be"),
        (lambda m, x: m.attribute(x.long()), TypeError, "floating point"),
        (lambda m, x: m.attribute(x, target=(1, 2)), TypeError, "tuple"),
        (lambda m, x: m.attribute(x, internal_batch_size=0), ValueError, "at least 1"),
    ],
)
def test_bad_inputs(load_tiny, images, call, error, match):
    with pytest.raises(error, match=match):
        call(CPLRP(load_tiny("ViTForImageClassification")), images)


def test_overflow_raises(load_tiny, images):
    with pytest.raises(NonFiniteError):
        AttnLRP(load_tiny("ViTForImageClassification", dtype=torch.float16)).attribute(images * 1e5, target=1)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models_agree_with_float32(load_tiny, images, dtype):
    expected = AttnLRP(load_tiny("Dinov2ForImageClassification")).attribute(images, target=TARGETS)
    got = AttnLRP(load_tiny("Dinov2ForImageClassification", dtype=dtype)).attribute(images, target=TARGETS)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    correlation = torch.corrcoef(torch.stack([got.flatten(), expected.flatten()]))[0, 1]
    assert correlation > 0.9, correlation


class _Saved:
    """A tensor autograd saved, held by the graph for as long as this object lives."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


def saved_bytes(model, x, rules) -> int:
    """Bytes of the distinct storages (parameters aside) that the graph of one forward pass
    under ``rules`` still holds when the pass is over: what the backward pass will read."""
    vit = as_vision_transformer(model)
    saved: list[weakref.ref] = []

    def pack(tensor):
        held = _Saved(tensor)
        saved.append(weakref.ref(held))
        return held

    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda held: held.tensor)
    with hooks, evaluating(model), rules(vit.blocks), frozen_parameters(), torch.enable_grad():
        logits = vit.logits(x.clone().requires_grad_(True))
    storages = {}
    for ref in saved:
        held = ref()
        if held is not None and held.tensor.untyped_storage().data_ptr() not in parameters:
            storages[held.tensor.untyped_storage().data_ptr()] = held.tensor.untyped_storage().nbytes()
    del logits
    return sum(storages.values())


@pytest.mark.parametrize("variant", ["attnlrp", "cplrp"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize(
    "name",
    ["ViTForImageClassification", "Dinov2WithRegistersForImageClassification", "BeitForImageClassification", "CLIPForImageClassification"],
)
def test_the_rules_keep_no_more_for_the_backward_pass_than_the_plain_pass(images, name, attn, variant):
    # an activation's own graph kept beside the identity rule's ratio once made this 1.4x
    model = tiny(name, attn)
    plain = saved_bytes(model, images, lambda blocks: contextlib.nullcontext())
    ruled = saved_bytes(model, images, lambda blocks: relevance_rules(model, blocks, variant=variant))
    assert 0 < ruled <= plain


def test_the_saved_tensors_are_what_the_rules_need():
    """ViT, sdpa: per layer the inputs of the two LayerNorms, the attention kernel's queries,
    keys, values, output and log-sum-exp, the identity rule's ratio; the last LayerNorm's
    input; the pixels (the patch embedding's input). Nothing else, in float32."""
    model = tiny("ViTForImageClassification", "sdpa")
    c = model.config
    x = torch.randn(2, 3, c.image_size, c.image_size, generator=torch.Generator().manual_seed(0))
    b, n = 2, (c.image_size // c.patch_size) ** 2 + 1
    per_layer = 6 * b * n * c.hidden_size + b * c.num_attention_heads * n + b * n * c.intermediate_size
    needed = 4 * (c.num_hidden_layers * per_layer + b * n * c.hidden_size + x.numel())
    for variant in ("attnlrp", "cplrp"):
        assert saved_bytes(model, x, lambda blocks, v=variant: relevance_rules(model, blocks, variant=v)) <= needed
