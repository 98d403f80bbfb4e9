from functools import partial

import pytest
import torch
import transformers
from captum.attr import Attribution
from reference_methods import reference_gmar
from tiny_models import (
    AUTO_READOUT,
    KERNEL_CAPTURED,
    MODEL_NAMES,
    NUM_LABELS,
    OPTION_MODELS,
    POOLING,
    PREFIX_TOKENS,
    VISION,
    takes_other_sizes,
)

import captum_gmar.methods.gmar
from captum_gmar import AttentionRollout, GMARAttribution
from captum_gmar.core.heads import uniform_except

LAYERS, HEADS = VISION["num_hidden_layers"], VISION["num_attention_heads"]

TARGETS = torch.tensor([0, 3, 1])


def patches(attribution, x, target=TARGETS, **kwargs):
    return attribution.attribute(x, target=target, output="patches", **kwargs).flatten(1)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_matches_the_straightforward_eager_implementation(load_tiny, images, name, attn):
    expected, expected_weights = reference_gmar(load_tiny(name, "eager"), images, TARGETS, PREFIX_TOKENS[name], readout=AUTO_READOUT[name])
    maps, weights = GMARAttribution(load_tiny(name, attn)).attribute(images, target=TARGETS, output="patches", return_head_weights=True)
    torch.testing.assert_close(maps.flatten(1), expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(weights, expected_weights, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", OPTION_MODELS)
@pytest.mark.parametrize(
    "options",
    [
        dict(norm="l2"),
        dict(head_gradient="attention"),
        dict(head_gradient="attention", norm="l2"),
        dict(alpha=0.2, start_layer=1),
        dict(alpha=0.0),
        dict(readout="model"),
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_options_match_the_reference(load_tiny, images, name, options):
    readout = POOLING[name] if options.get("readout") == "model" else AUTO_READOUT[name]
    reference_options = {k: v for k, v in options.items() if k != "readout"}
    expected, _ = reference_gmar(load_tiny(name, "eager"), images, TARGETS, PREFIX_TOKENS[name], readout=readout, **reference_options)
    torch.testing.assert_close(patches(GMARAttribution(load_tiny(name), **options), images), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("gate", ["abs", "positive"])
@pytest.mark.parametrize("name", OPTION_MODELS)
def test_gate_head_weights_are_the_gradient_of_an_explicit_gate_on_each_head(load_tiny, images, name, gate):
    model = load_tiny(name, "eager")
    gmar = GMARAttribution(model, head_gradient="gate", gate=gate)
    # one gate per layer, example and head, multiplying the head's channels before the output projection
    gates = torch.ones(LAYERS, len(images), HEADS, requires_grad=True)

    def gated(layer):
        def hook(module, args):
            b, t, channels = args[0].shape
            scaled = args[0].view(b, t, HEADS, channels // HEADS) * gates[layer][:, None, :, None]
            return scaled.view(b, t, channels), *args[1:]

        return hook

    handles = [block.output.register_forward_pre_hook(gated(i)) for i, block in enumerate(gmar.vit.blocks)]
    try:
        logits = gmar.vit.logits(images)
    finally:
        for handle in handles:
            handle.remove()
    # each example's gates reach only its own logits: one backward pass gives every example's gradient
    (per_head,) = torch.autograd.grad(logits.gather(1, TARGETS[:, None]).sum(), gates)
    scores = (per_head.abs() if gate == "abs" else per_head.clamp_min(0)).transpose(0, 1)  # (B, L, H)
    expected = torch.where(scores.sum(-1, keepdim=True) > 0, scores / scores.sum(-1, keepdim=True), 1 / HEADS)
    _, weights = gmar.attribute(images, target=TARGETS, return_head_weights=True)
    torch.testing.assert_close(weights, expected, rtol=1e-4, atol=1e-6)
    if gate == "positive":  # a head against the target gets no weight, which the absolute value would give it
        assert (per_head < 0).any()


@pytest.mark.parametrize("name", OPTION_MODELS)
def test_uniform_head_weights_give_mean_attention_rollout(load_tiny, images, name, monkeypatch):
    model = load_tiny(name)
    # every head scored alike: (B, H) ones from the heads' output gradient (B, T, H * d)
    monkeypatch.setattr(captum_gmar.methods.gmar, "context_head_scores", lambda grad, heads, norm: torch.ones(len(grad), heads))
    torch.testing.assert_close(
        patches(GMARAttribution(model, alpha=0.3), images),
        patches(AttentionRollout(model, head_fusion="mean", alpha=0.3), images),
    )


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_weight_transform_ablates_weights_and_all_uniform_is_mean_rollout(load_tiny, images, name):
    model = load_tiny(name)
    uniform = GMARAttribution(model, weight_transform=partial(uniform_except, keep=torch.zeros(LAYERS, HEADS, dtype=torch.bool)))
    torch.testing.assert_close(patches(uniform, images), patches(AttentionRollout(model, head_fusion="mean"), images))
    _, own = GMARAttribution(model).attribute(images, target=TARGETS, return_head_weights=True)
    keep = torch.zeros(LAYERS, HEADS, dtype=torch.bool)
    keep[1, 2] = True
    _, ablated = GMARAttribution(model, weight_transform=partial(uniform_except, keep=keep)).attribute(
        images, target=TARGETS, return_head_weights=True
    )
    torch.testing.assert_close(ablated, uniform_except(own, keep))  # what was fused is returned


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_class_head_weights_equal_one_call_per_class(load_tiny, images, name):
    gmar = GMARAttribution(load_tiny(name), norm="l2")
    weights = gmar.class_head_weights(images, classes=[3, 0], internal_batch_size=2)
    assert weights.shape == (3, 2, LAYERS, HEADS)
    for k, c in enumerate([3, 0]):
        _, expected = gmar.attribute(images, target=c, return_head_weights=True)
        torch.testing.assert_close(weights[:, k], expected, rtol=1e-4, atol=1e-6)
    assert gmar.class_head_weights(images[:1]).shape == (1, NUM_LABELS, LAYERS, HEADS)  # every class by default


def test_class_head_weights_ignore_the_weight_transform_and_check_classes(load_tiny, images):
    model = load_tiny("ViTForImageClassification")
    own = GMARAttribution(model).class_head_weights(images, classes=[1, 2])
    ablated = GMARAttribution(model, weight_transform=lambda w: torch.full_like(w, 1 / HEADS))
    torch.testing.assert_close(ablated.class_head_weights(images, classes=[1, 2]), own)
    for classes in ([], [1, 1], [NUM_LABELS], [-1], [0.5], [[0, 1]]):
        with pytest.raises(ValueError, match="classes must be"):
            ablated.class_head_weights(images, classes=classes)


def test_weight_transform_must_keep_the_shape(load_tiny, images):
    gmar = GMARAttribution(load_tiny("ViTForImageClassification"), weight_transform=lambda w: w[:, :1])
    with pytest.raises(ValueError, match=r"weight_transform must return weights of shape \(3, 3, 4\)"):
        gmar.attribute(images, target=0)


def test_gradient_weighting_differs_from_rollout(load_tiny, images):
    model = load_tiny("ViTForImageClassification")
    gmar, rollout = patches(GMARAttribution(model), images), patches(AttentionRollout(model), images)
    assert (gmar - rollout).abs().max() > 1e-4


def test_batch_equals_example_by_example_and_internal_batches(load_tiny):
    model = load_tiny("DeiTForImageClassificationWithTeacher")
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    targets = torch.tensor([4, 0, 2, 2, 1])
    gmar = GMARAttribution(model)
    whole, weights = gmar.attribute(x, target=targets, return_head_weights=True)
    singles = torch.cat([gmar.attribute(x[i : i + 1], target=int(targets[i])) for i in range(5)])
    torch.testing.assert_close(whole, singles, rtol=1e-4, atol=1e-7)
    chunked, chunked_weights = gmar.attribute(x, target=targets, internal_batch_size=2, return_head_weights=True)
    torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(chunked_weights, weights, rtol=1e-4, atol=1e-7)


def test_target_none_explains_the_predicted_class(load_tiny, images):
    model = load_tiny("ViTForImageClassification")
    predicted = model(pixel_values=images).logits.argmax(-1)
    gmar = GMARAttribution(model)
    torch.testing.assert_close(gmar.attribute(images), gmar.attribute(images, target=predicted))


def test_target_forms_agree_and_per_example_targets_matter(load_tiny, images):
    gmar = GMARAttribution(load_tiny("ViTForImageClassification"))
    as_int = gmar.attribute(images, target=2)
    torch.testing.assert_close(gmar.attribute(images, target=[2, 2, 2]), as_int)
    torch.testing.assert_close(gmar.attribute(images, target=torch.tensor([2, 2, 2])), as_int)
    same_image = images[:1].expand(NUM_LABELS, -1, -1, -1)
    per_class = gmar.attribute(same_image, target=list(range(NUM_LABELS)), output="patches")
    assert (per_class[0] - per_class[1:]).abs().amax() > 1e-5


def test_output_shapes_and_head_weights(load_tiny, images):
    gmar = GMARAttribution(load_tiny("Dinov2WithRegistersForImageClassification"), start_layer=1)
    maps, weights = gmar.attribute(images, target=1, return_head_weights=True)
    assert maps.shape == images.shape and maps.dtype == torch.float32
    assert (maps >= 0).all()
    assert weights.shape == (3, 2, 4)  # B, layers 1..2, heads
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2))
    assert gmar.attribute(images, output="patches").shape == (3, 4, 4)
    as_tuple = gmar.attribute((images,), target=1)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], maps)


@pytest.mark.parametrize(
    "name, attn",
    # eager too where the eager attention is captured otherwise (probabilities at the kernel)
    [(name, "sdpa") for name in MODEL_NAMES] + [(name, "eager") for name in KERNEL_CAPTURED],
)
def test_non_square_inputs_of_another_size(load_tiny, name, attn):
    model = load_tiny(name, attn)
    if not takes_other_sizes(model):
        pytest.skip(f"{name} takes no interpolate_pos_encoding in this transformers version")
    x = torch.randn(2, 3, 40, 24, generator=torch.Generator().manual_seed(4))
    targets = torch.tensor([1, 2])
    gmar = GMARAttribution(model, readout="model")
    grid = gmar.attribute(x, target=targets, output="patches")
    assert grid.shape == (2, 5, 3)
    expected, _ = reference_gmar(load_tiny(name, "eager"), x, targets, PREFIX_TOKENS[name], readout=POOLING[name])
    torch.testing.assert_close(grid.flatten(1), expected, rtol=1e-4, atol=1e-6)
    assert gmar.attribute(x, target=targets).shape == x.shape


def test_model_comes_back_as_it_was(load_tiny, images):
    model = load_tiny("ViTForImageClassification")
    model.classifier.weight.requires_grad_(False)
    modes = {name: m.training for name, m in model.named_modules()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    GMARAttribution(model).attribute(images, target=1)
    assert model.config._attn_implementation == "sdpa"
    assert modes == {name: m.training for name, m in model.named_modules()}
    assert flags == {name: p.requires_grad for name, p in model.named_parameters()}
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_model_comes_back_as_it_was_after_an_error(load_tiny, images, monkeypatch):
    model = load_tiny("DeiTForImageClassification")
    gmar = GMARAttribution(model)

    def fail(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(captum_gmar.methods.gmar, "rollout_row", fail)
    with pytest.raises(RuntimeError, match="boom"):
        gmar.attribute(images, target=1)
    assert not any(m.training for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_works_inside_no_grad_and_inference_mode(load_tiny, images):
    gmar = GMARAttribution(load_tiny("ViTForImageClassification"))
    expected = gmar.attribute(images, target=1)
    with torch.no_grad():
        torch.testing.assert_close(gmar.attribute(images, target=1), expected)
    with torch.inference_mode():
        inference_images = images.clone()
        torch.testing.assert_close(gmar.attribute(inference_images, target=1), expected)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models(load_tiny, images, dtype):
    reference = patches(GMARAttribution(load_tiny("ViTForImageClassification")), images)
    half = patches(GMARAttribution(load_tiny("ViTForImageClassification", dtype=dtype)), images)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, reference, rtol=0.1, atol=2e-3)
    assert torch.corrcoef(torch.stack([half.flatten(), reference.flatten()]))[0, 1] > 0.95


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_cuda_matches_cpu(load_tiny, images, name):
    cpu = patches(GMARAttribution(load_tiny(name)), images)
    cuda = patches(GMARAttribution(load_tiny(name).cuda()), images)
    assert cuda.device.type == "cpu"  # results come back on the inputs' device
    torch.testing.assert_close(cuda, cpu, rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_vit_b16_shaped_config_at_224():
    torch.manual_seed(0)
    config = transformers.ViTConfig(num_labels=10)  # ViT-B/16: 12 layers, 12 heads, 768 wide, 224 px
    model = transformers.ViTForImageClassification(config).eval()
    x = torch.randn(2, 3, 224, 224)
    maps, weights = GMARAttribution(model).attribute(x, target=[3, 7], return_head_weights=True)
    assert maps.shape == (2, 3, 224, 224)
    assert weights.shape == (2, 12, 12)
    assert GMARAttribution(model).attribute(x[:1], output="patches").shape == (1, 14, 14)


def test_captum_conventions(load_tiny):
    gmar = GMARAttribution(load_tiny("ViTForImageClassification"))
    assert isinstance(gmar, Attribution)
    assert not gmar.has_convergence_delta()
    assert GMARAttribution.get_name() == "GMAR"
    assert hasattr(GMARAttribution.attribute, "__wrapped__")  # captum.log.log_usage
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(gmar.forward_func(x), gmar.vit.model(pixel_values=x).logits)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(norm="l3"), ValueError, "norm must be 'l1' or 'l2'"),
        (dict(head_gradient="query"), ValueError, "head_gradient must be 'context', 'attention' or 'gate'"),
        (dict(head_gradient="gate", gate="negative"), ValueError, "gate must be 'abs' or 'positive'"),
        (dict(alpha=1.5), ValueError, r"alpha must lie in \[0, 1\]"),
        (dict(alpha=-0.1), ValueError, r"alpha must lie in \[0, 1\]"),
        (dict(alpha="half"), TypeError, "alpha must be a number"),
        (dict(start_layer=3), ValueError, r"start_layer must lie in \[0, 2\]"),
        (dict(start_layer=-1), ValueError, "start_layer must lie"),
        (dict(start_layer=1.0), TypeError, "start_layer must be an int"),
    ],
)
def test_bad_options(load_tiny, kwargs, error, message):
    with pytest.raises(error, match=message):
        GMARAttribution(load_tiny("ViTForImageClassification"), **kwargs)


def test_bad_attribute_arguments(load_tiny, images):
    gmar = GMARAttribution(load_tiny("ViTForImageClassification"))
    with pytest.raises(ValueError, match="output must be 'input' or 'patches'"):
        gmar.attribute(images, output="pixels")
    with pytest.raises(ValueError, match="a tuple of 2"):
        gmar.attribute((images, images))
    with pytest.raises(ValueError, match="out of range"):
        gmar.attribute(images, target=NUM_LABELS)
    with pytest.raises(ValueError, match="2 entries but the batch has 3"):
        gmar.attribute(images, target=[0, 1])
    with pytest.raises(ValueError, match="NaN"):
        gmar.attribute(torch.full_like(images, float("nan")))
    with pytest.raises(ValueError, match="expects 3"):
        gmar.attribute(images[:, :1])


@pytest.mark.parametrize(
    "model, message",
    [
        (torch.nn.Linear(4, 2), "not a supported vision transformer"),
        (
            transformers.ViTModel(transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=32)),
            "ViTModel returns an embedding, not class logits: pass references=",
        ),
    ],
    ids=["linear", "vit-without-head"],
)
def test_unsupported_models(model, message):
    with pytest.raises(TypeError, match=message):
        GMARAttribution(model)
