"""The shared ``attribute()`` of the base class: models changed after construction, wrapped
models, threads, overflow, the memory check and meta tensors. GMAR stands for every
method, as they all run through the same base class."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import peft
import pytest
import torch
import transformers

import captum_gmar.methods.base as attribution_module
import captum_gmar.methods.guard as guard_module
from captum_gmar import CPLRP, AttentionRollout, AttnLRP, GenericAttentionExplainability, GMARAttribution, TokenGradCAM
from captum_gmar.errors import InsufficientMemoryError, NonFiniteError, UnsupportedModelError
from captum_gmar.vit.model import VisionTransformer

VIT = "ViTForImageClassification"


def vit_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The encoder layers of a ViT (transformers 5 and 4.57 names)."""
    return model.vit.layers if hasattr(model.vit, "layers") else model.vit.encoder.layer


def lora(model: torch.nn.Module) -> peft.PeftModel:
    """LoRA on the query and key projections, initialised non-zero so that it changes the maps
    (in eval mode: peft adds its layers in training mode, which an explanation refuses)."""
    names = ["q_proj", "k_proj"] if hasattr(model.vit, "layers") else ["query", "key"]  # transformers 5 / 4.57
    return peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=names, init_lora_weights=False)).eval()


def test_lora_injected_after_construction_is_used(load_tiny, images):
    model = load_tiny(VIT)
    gmar = GMARAttribution(model)
    before = gmar.attribute(images, target=1)
    torch.manual_seed(0)
    wrapped = lora(model)
    after = gmar.attribute(images, target=1)
    assert not torch.allclose(after, before, atol=1e-4)
    torch.testing.assert_close(after, GMARAttribution(wrapped).attribute(images, target=1))
    merged = wrapped.merge_and_unload()
    torch.testing.assert_close(gmar.attribute(images, target=1), after, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(GMARAttribution(merged).attribute(images, target=1), after, rtol=1e-4, atol=1e-6)


def test_object_built_on_a_peft_model_works_after_merge_and_unload(load_tiny, images):
    torch.manual_seed(0)
    wrapped = lora(load_tiny(VIT))
    gmar = GMARAttribution(wrapped)
    expected = gmar.attribute(images, target=2)
    wrapped.merge_and_unload()
    torch.testing.assert_close(gmar.attribute(images, target=2), expected, rtol=1e-4, atol=1e-6)


def test_torch_compile_wrapper_is_unwrapped(load_tiny, images):
    model = load_tiny(VIT)
    compiled = torch.compile(model)  # compiles lazily: unwrapping must not trigger it
    assert GMARAttribution(compiled).vit.model is model
    torch.testing.assert_close(GMARAttribution(compiled).attribute(images, target=1), GMARAttribution(model).attribute(images, target=1))


def test_a_layer_removed_after_construction_is_reported(load_tiny, images):
    model = load_tiny(VIT)
    gmar = GMARAttribution(model, start_layer=2)
    del vit_layers(model)[2]
    with pytest.raises(UnsupportedModelError, match="found 2 attention blocks .* config has 3 layers"):
        gmar.attribute(images, target=1)


def test_calls_from_threads_on_one_model_equal_sequential_calls(load_tiny, images):
    model = load_tiny(VIT)
    expected = GMARAttribution(model).attribute(images, target=1)
    start = threading.Barrier(4)

    def work() -> list[torch.Tensor]:
        start.wait()
        return [GMARAttribution(model).attribute(images, target=1) for _ in range(10)]

    with ThreadPoolExecutor(4) as pool:
        results = [future.result() for future in [pool.submit(work) for _ in range(4)]]
    for maps in results:
        for got in maps:
            torch.testing.assert_close(got, expected)
    assert not any(module.training for module in model.modules())
    assert all(param.requires_grad and param.grad is None for param in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_another_threads_forward_pass_is_not_captured(load_tiny, images):
    model = load_tiny(VIT)
    gmar = GMARAttribution(model)
    expected = gmar.attribute(images, target=1)
    others = torch.randn_like(images) * 3
    owner, done = threading.get_ident(), []

    def interleave(module, args):
        # in the middle of the explained pass, another thread runs the same model
        if threading.get_ident() == owner and not done:
            done.append(True)
            other = threading.Thread(target=lambda: model(pixel_values=others))
            other.start()
            other.join()

    handle = gmar.vit.blocks[1].query.register_forward_pre_hook(interleave)
    try:
        got = gmar.attribute(images, target=1)
    finally:
        handle.remove()
    assert done
    torch.testing.assert_close(got, expected)


def test_two_models_run_in_parallel(load_tiny, images):
    first, second = load_tiny(VIT), load_tiny(VIT)
    second_done = threading.Event()

    def wait_for_the_other_model(module, args):
        # would time out if calls on different models were serialised
        assert second_done.wait(timeout=30), "a call on another model was blocked"

    handle = vit_layers(first)[0].register_forward_pre_hook(wait_for_the_other_model)
    try:
        with ThreadPoolExecutor(2) as pool:
            blocked = pool.submit(GMARAttribution(first).attribute, images, target=1)
            GMARAttribution(second).attribute(images, target=1)
            second_done.set()
            blocked.result(timeout=60)
    finally:
        handle.remove()


@pytest.mark.parametrize("dtype, scale", [(torch.float32, 1e20), (torch.float16, 1e5)])
def test_overflow_raises_instead_of_returning_nan(load_tiny, images, dtype, scale):
    model = load_tiny(VIT, dtype=dtype)
    with pytest.raises(NonFiniteError, match="NaN or infinite"):
        GMARAttribution(model).attribute(images * scale, target=1)
    assert all(p.requires_grad for p in model.parameters())


def test_non_finite_gradients_raise(load_tiny, images, monkeypatch):
    gmar = GMARAttribution(load_tiny(VIT))
    monkeypatch.setattr(
        gmar, "_explain", lambda trace, targets: attribution_module.Explanation(torch.full((len(targets), 17), float("nan")))
    )
    with pytest.raises(NonFiniteError, match="GMAR produced NaN or infinite relevance"):
        gmar.attribute(images, target=1)


GRADIENT_METHODS = [GMARAttribution, GenericAttentionExplainability, TokenGradCAM, AttnLRP, CPLRP]


@pytest.mark.parametrize("method", GRADIENT_METHODS, ids=lambda m: m.__name__)
@pytest.mark.parametrize(
    "score, message",
    [
        (lambda z: z[:, 0] * float("nan"), "explained score is NaN"),
        (lambda z: (z[:, 0] - 1e6).sqrt(), "explained score is NaN"),  # NaN score, NaN gradient
        (lambda z: (z[:, 0] - 1e6).neg().neg().log(), "explained score is NaN"),  # NaN score, finite gradient
        (lambda z: (z[:, 0] - z[:, 0]).sqrt(), "gradient of the explained score"),  # score 0, gradient inf
    ],
    ids=["nan", "sqrt-negative", "log-negative", "sqrt-at-zero"],
)
def test_a_score_or_gradient_that_is_not_a_number_is_refused_by_every_method(load_tiny, images, method, score, message):
    # GMAR used to return rollout's map here: NaN head scores fell back to uniform weights
    with pytest.raises(NonFiniteError, match=message):
        method(load_tiny(VIT)).attribute(images, target=score)


def test_the_error_names_the_examples_whose_score_is_not_a_number(load_tiny, images):
    def second_is_nan(z: torch.Tensor) -> torch.Tensor:
        return z[:, 0] * torch.tensor([1.0, float("nan")] + [1.0] * (len(z) - 2))

    with pytest.raises(NonFiniteError, match=r"example\(s\) \[1\]"):
        GMARAttribution(load_tiny(VIT)).attribute(images, target=second_is_nan)


def test_too_large_an_image_is_refused_before_any_work(load_tiny, monkeypatch):
    model = load_tiny(VIT)

    def no_forward(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(model, "forward", no_forward)
    photo = torch.zeros(1, 3, 3000, 4000)  # 187,501 tokens: one layer's maps alone are 524 GiB
    with pytest.raises(
        InsufficientMemoryError, match=r"3000x4000 px \(187,501 tokens, 4 heads\).*resize the images \(the model was trained at 32x32 px"
    ):
        GMARAttribution(model).attribute(photo, target=1)


@pytest.mark.parametrize(
    "method",
    [
        GMARAttribution,
        *(pytest.param(m, marks=pytest.mark.slow) for m in (AttentionRollout, GenericAttentionExplainability, AttnLRP, CPLRP)),
    ],
)
def test_the_memory_check_suggests_an_internal_batch_size_that_works(load_tiny, monkeypatch, method):
    explainer = method(load_tiny(VIT, attn="eager"))
    # 5 images with room for 3 and not 4. The estimate is not in proportion to the batch:
    # the fixed part is large on this model, and from 7 images an eager attention's maps
    # (5 MiB an image) are above glibc's mmap threshold and counted once
    x = torch.randn(5, 3, 192, 192)
    three, four = (explainer.estimate_bytes((batch, 3, 192, 192)) for batch in (3, 4))
    assert three < four < explainer.estimate_bytes(x.shape)
    monkeypatch.setattr(guard_module, "available_bytes", lambda device: (three + four) // 2)
    with pytest.raises(InsufficientMemoryError, match="pass internal_batch_size=3 "):
        explainer.attribute(x, target=1)
    explainer.attribute(x, target=1, internal_batch_size=3)


def test_the_suggested_internal_batch_size_fits_where_the_estimate_grows_faster_than_the_batch(load_tiny, monkeypatch):
    # on a CPU a term crosses glibc's mmap threshold as the batch grows, so need(b) is not b * need(1)
    explainer = GMARAttribution(load_tiny(VIT))
    monkeypatch.setattr(explainer, "estimate_bytes", lambda shape: 2**20 * shape[0] ** 2)
    monkeypatch.setattr(guard_module, "available_bytes", lambda device: 10 * 2**20)
    with pytest.raises(InsufficientMemoryError, match="pass internal_batch_size=3 "):  # 9 MiB fits, 16 does not; 10 // 1 would say 10
        explainer.attribute(torch.randn(8, 3, 32, 32), target=1)


def test_meta_model_is_rejected_at_once(load_tiny, images):
    model = load_tiny(VIT).to("meta")
    with pytest.raises(ValueError, match="meta device"):
        GMARAttribution(model).attribute(images, target=1)


def test_unsupported_models_say_which_families_are():
    swin_config = transformers.SwinConfig(image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 1], window_size=2)
    swin = transformers.SwinForImageClassification(swin_config)
    with pytest.raises(UnsupportedModelError, match="windowed attention has no global token-to-token map.*Supported: ViT, DeiT"):
        VisionTransformer(swin)
    convnext = transformers.ConvNextForImageClassification(transformers.ConvNextConfig(hidden_sizes=[8], depths=[1], num_stages=1))
    with pytest.raises(UnsupportedModelError, match="ConvNextForImageClassification is not a supported vision transformer"):
        VisionTransformer(convnext)


@pytest.mark.parametrize("cls", [GMARAttribution, AttentionRollout, GenericAttentionExplainability, TokenGradCAM, AttnLRP, CPLRP])
def test_a_wrapped_model_is_used_as_it_is_and_gives_the_same_maps(load_tiny, images, cls):
    model = load_tiny(VIT)
    vit = VisionTransformer(model)
    shared = cls(vit)
    assert shared.vit is vit
    torch.testing.assert_close(shared.attribute(images, target=1), cls(model).attribute(images, target=1), rtol=0, atol=0)
    with pytest.raises(ValueError, match="wrapped already"):
        cls(vit, text=torch.zeros(2, 3, dtype=torch.long))
