"""The memory and time estimates: at or above the measured peak, growing with every
dimension, and the refusal of a call too slow, before any forward pass."""

import os
import re
from dataclasses import replace

import forks
import pytest
import torch
import transformers

import captum_gmar.core.allocator as allocator_module
import captum_gmar.methods.guard as guard_module
from captum_gmar import (
    CPLRP,
    AttentionRollout,
    AttnLRP,
    GenericAttentionExplainability,
    GMARAttribution,
    RawAttention,
    TokenGradCAM,
)
from captum_gmar.core.allocator import malloc_defaults, mmapped_terms, smallest_blocks
from captum_gmar.core.memory import (
    _FIXED_BYTES,
    _HEAP_RETAINED_MAX,
    _PER_THREAD_BYTES,
    _RESIDENT_EAGER,
    COEFFICIENTS,
    LIVE_MARGIN,
    RESIDENT_FACTOR,
    SLOW_CALL_SECONDS,
    CallSizes,
    attention_call_phases,
    attention_seconds,
    available_bytes,
    estimated_bytes,
    fitted_seconds,
    gib,
    live_bytes,
    peak_live_bytes,
    probe_tokens,
    relevance_call_phases,
)
from captum_gmar.errors import TooSlowError
from captum_gmar.reference import load_reference_model
from captum_gmar.vit.architectures import _position_biases

METHODS = [GMARAttribution, AttentionRollout, GenericAttentionExplainability, RawAttention, TokenGradCAM, AttnLRP, CPLRP]


LINUX_PEAK = pytest.mark.skipif(
    not os.access("/proc/self/clear_refs", os.W_OK), reason="measuring the peak needs Linux's /proc/self/clear_refs"
)


# Each measurement runs in a process of its own (tests/forks.py): the heap of this process
# holds what earlier tests left. Peaks measured in forks and in fresh interpreters agreed
# within the heap's own spread (raw attention at 512 px: 574 and 573 MiB; GMAR eager at
# 512 px: 2,218 and 2,215).


def _median_resident_peak_and_estimate(method: type, attn: str, side: int, chunks: int = 1, calls: int = 5) -> tuple[int, int]:
    """The median resident peak of ``calls`` calls of ``method`` on the bundled ``vit-tiny``
    at ``side`` px (``chunks`` images, one at a time through ``internal_batch_size``), and
    the estimate for one, in a process of its own. The peak of one call depends on which
    freed blocks glibc keeps (GAE at 256 px: 142 to 231 MiB over 30 calls), so the estimate
    is held against the median of several calls (each after a malloc_trim), the peak a call
    has as often as not."""
    script = f"""
import statistics
import torch
from captum_gmar import {method.__name__}
from captum_gmar.core.memory import peak_resident_increase
from captum_gmar.reference import load_reference_model
explainer = {method.__name__}(load_reference_model(attn_implementation={attn!r}))
x = torch.randn({chunks}, 3, {side}, {side})
explainer.attribute(x[:1, :, :56, :56], target=1)  # warm-up: thread pools and kernels are not the call's
peaks = [peak_resident_increase(lambda: explainer.attribute(x, target=1, internal_batch_size=1)) for _ in range({calls})]
connection.send((int(statistics.median(peaks)), explainer.estimate_bytes(x[:1].shape)))
"""
    receiver, sender = forks.FORKS.Pipe(duplex=False)
    process = forks.start(script, connection=sender)
    sender.close()
    try:
        typical, estimate = receiver.recv()
    except EOFError:  # it died before sending: its traceback went to stderr
        process.join()
        raise AssertionError(f"the measuring process failed with exit code {process.exitcode}") from None
    process.join()
    return typical, estimate


@LINUX_PEAK
@pytest.mark.parametrize(
    ("method", "attn"),
    # one call in the default run, each taking about 5 s; every method and attention with -m slow
    [
        pytest.param(method, attn, marks=[] if (method, attn) == (GMARAttribution, "sdpa") else [pytest.mark.slow])
        for method in METHODS
        for attn in ("sdpa", "eager")
    ],
)
def test_on_a_cpu_the_estimate_is_at_or_above_the_median_resident_peak_and_at_most_2_75_times_it(method, attn):
    # At 256 px (1,025 tokens) every block is served from glibc's heap (maps of 16 MiB), and
    # what the heap keeps differs by method: at or above the median, so that a call is not
    # refused that fits, and at most 2.75 times it, so that the guard does not refuse early.
    # The bound is not 2: the median was 1.1 to 1.2 times raw attention's live peak and 2.3 times
    # GAE's, and between runs and machines (GAE's median 156 to 200 MiB here, 233 in a CI
    # run), so one estimate at or above GAE's median everywhere is 2.40 to 2.49 times raw
    # attention's (1.35 to 2.49 times it over every method in three runs,
    # docs/benchmarks.md). A factor per method would not narrow it: within one method it
    # differs as much by model and size. With glibc's mmap threshold held fixed
    # (MALLOC_MMAP_THRESHOLD_=131072) the median is the live peak (1.00 to 1.04 times it):
    # the spread is the heap's.
    typical, estimate = _median_resident_peak_and_estimate(method, attn, 256)
    assert typical <= estimate <= 2.75 * typical, (gib(estimate), gib(typical))


@LINUX_PEAK
@pytest.mark.skipif(not malloc_defaults(), reason="glibc's malloc with its default settings serves these maps by mmap")
@pytest.mark.parametrize(
    ("method", "attn", "chunks"),
    # the methods whose maps are served by mmap at 512 px; one in the default run (about 16 s)
    [pytest.param(AttentionRollout, "sdpa", 1)]
    + [
        pytest.param(method, "sdpa", 1, marks=pytest.mark.slow)
        for method in (GMARAttribution, GenericAttentionExplainability, RawAttention)
    ]
    + [pytest.param(method, "eager", 1, marks=pytest.mark.slow) for method in METHODS]
    + [pytest.param(GMARAttribution, "sdpa", 2, marks=pytest.mark.slow)],  # two chunks: the second reuses the first's heap
)
def test_on_a_cpu_maps_served_by_mmap_are_counted_once_at_most_1_75_times_the_resident_peak(method, attn, chunks):
    # At 512 px (4,097 tokens) a map is 64 MiB or more, above glibc's largest mmap
    # threshold: resident while alive and only then, so the estimate counts it once (it
    # was 2.1 to 2.6 times the median when it counted them as heap blocks; 1.16 to 1.35
    # now). The bound is 1.75, not 1.5: the estimate is up to 1.61 times the live peak
    # (GMAR, sdpa), below which no resident peak can fall, whatever the heap keeps. One call,
    # not the median of several: with the maps outside the heap, five calls' peaks lay within
    # 1% of one another (GAE eager: 2,206 to 2,226 MiB; raw attention sdpa: 561 to 577), a
    # spread the bounds' margins (1.16 to 1.35 times) dwarf, and each call at 512 px takes
    # 5 to 20 s on one core.
    typical, estimate = _median_resident_peak_and_estimate(method, attn, 512, chunks, calls=1)
    assert typical <= estimate <= 1.75 * typical, (gib(estimate), gib(typical))


def _random_model(name: str, attn: str) -> torch.nn.Module:
    """``vit-b16``: a random ViT-B/16 with 1,000 classes, the model of the CUDA figures
    (docs/benchmarks.md); ``beit``: a random 6-layer BEiT, whose attention adds a relative
    position bias that sdpa keeps per layer; ``clip``: a random 6-layer CLIP vision tower,
    whose ``quick_gelu`` keeps more for the backward pass than a GELU."""
    torch.manual_seed(0)
    if name == "vit-b16":
        return transformers.ViTForImageClassification(transformers.ViTConfig(num_labels=1000, attn_implementation=attn)).eval()
    if name == "clip":
        vision = {"num_hidden_layers": 6, "hidden_size": 384, "num_attention_heads": 6, "intermediate_size": 1536, "patch_size": 16}
        config = transformers.CLIPConfig(vision_config=vision, num_labels=10, attn_implementation=attn)
        return transformers.CLIPForImageClassification(config).eval()
    config = transformers.BeitConfig(
        num_hidden_layers=6,
        hidden_size=384,
        num_attention_heads=6,
        intermediate_size=1536,
        use_relative_position_bias=True,
        num_labels=10,
        attn_implementation=attn,
    )
    return transformers.BeitForImageClassification(config).eval()


@pytest.mark.parametrize(
    ("method", "attn", "model", "shape"),
    # the bundled vit-tiny in the default run (each call under a second); ViT-B/16 for GMAR there, every method with -m slow
    [pytest.param(method, attn, "vit-tiny", (2, 3, 256, 256)) for method in METHODS for attn in ("sdpa", "eager")]
    + [
        pytest.param(method, attn, "vit-b16", (1, 3, 224, 224), marks=[] if method is GMARAttribution else [pytest.mark.slow])
        for method in METHODS
        for attn in ("sdpa", "eager")
    ]
    + [pytest.param(method, "sdpa", "beit", (2, 3, 224, 224), marks=[pytest.mark.slow]) for method in (AttentionRollout, AttnLRP)]
    + [pytest.param(method, "sdpa", "clip", (2, 3, 224, 224), marks=[pytest.mark.slow]) for method in (TokenGradCAM, AttentionRollout)],
)
def test_the_estimate_for_a_caching_allocator_is_1_to_1_5_times_the_peak_of_live_tensors(method, attn, model, shape):
    """What CUDA's allocator holds is the tensors alive; the CPU's allocator sees the same
    allocations (the ViT-B/16 peaks measured here matched those of an H200 to 0.6 MiB), so the
    estimate for a CUDA device is held against the live tensors counted on the CPU. The
    count does not depend on which freed blocks the C library keeps, so one call tells."""
    network = load_reference_model(model, attn_implementation=attn) if model == "vit-tiny" else _random_model(model, attn)
    explainer = method(network)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    explainer.attribute(x[:1], target=1)  # warm-up: lazily built kernels (at the call's size: CLIP takes no other in transformers 4)
    peak = peak_live_bytes(lambda: explainer.attribute(x, target=1))
    estimate = explainer.estimate_bytes(shape, device="cuda")
    assert peak <= estimate <= 1.5 * peak, (gib(estimate), gib(peak), estimate / peak)


def test_peak_live_bytes_counts_the_tensors_alive_at_once():
    x = torch.zeros(1000, 1000)  # 4 MB

    def call() -> float:
        doubled = x * 2
        shifted = doubled + 1  # two 4 MB tensors alive at once
        del doubled
        return float((shifted @ shifted).sum())  # again two, then one

    assert peak_live_bytes(call) == pytest.approx(2 * x.nbytes, abs=64 * 1024)


def _sizes(batch: int = 1, tokens: int = 100, heads: int = 4, layers: int = 6, hidden: int = 128, itemsize: int = 4) -> CallSizes:
    return CallSizes(batch, tokens, heads, layers, hidden, itemsize, pixels=3 * 80 * 80)


def _live(
    sizes: CallSizes, maps_alive: float = 3.0, captured: int = 3, backward: bool = True, eager: bool = False, maps_kept: bool = False
) -> float:
    return live_bytes(attention_call_phases(sizes, maps_alive, captured, backward, eager, maps_kept))


def test_the_peak_is_the_larger_phase_and_the_maps_grow_with_the_square_of_the_tokens():
    # large maps and a short model: the maps' phase peaks, with the method's float32 maps
    sizes = _sizes(tokens=2000, layers=1, hidden=8)
    passes, building = attention_call_phases(sizes, 3.0, 3, backward=True, eager=False, maps_kept=False)
    assert building["maps"] == 3 * 4 * 2000**2 * 4
    assert _live(sizes) == pytest.approx(max(live_bytes((passes,)), live_bytes((building,))))
    assert live_bytes((building,)) > live_bytes((passes,))
    grown = _live(_sizes(tokens=4000, layers=1, hidden=8))
    assert 3.5 * _live(sizes) < grown <= 4 * _live(sizes)  # the maps' part grows 4 times, the rest 2 times
    assert _live(_sizes(batch=3, tokens=2000, layers=1, hidden=8)) == pytest.approx(3 * _live(sizes))
    # few tokens and a deep, wide model: the passes peak, with the backward pass's graph
    deep = _sizes(tokens=50, layers=24, hidden=1024)
    assert _live(deep) == pytest.approx(live_bytes(attention_call_phases(deep, 3.0, 3, True, False, False)[:1]))
    assert _live(deep, backward=False) < _live(deep)  # without a backward pass only the capture's tensors


def test_an_eager_attention_keeps_every_layers_probabilities_only_for_a_backward_pass_or_a_capture_at_the_kernel():
    sizes = _sizes(tokens=500, hidden=8, itemsize=2)
    one_map = 4 * 500**2 * 2  # (1, 4, 500, 500) in float16
    passes = attention_call_phases(sizes, 0.0, 3, backward=True, eager=True, maps_kept=False)[0]
    assert passes["eager_kept"] == 6 * one_map and passes["eager_moment"] == 4 * one_map  # scores, probabilities, their gradients
    forward = attention_call_phases(sizes, 0.0, 2, backward=False, eager=True, maps_kept=False)[0]
    assert forward["eager_kept"] == 0 and forward["eager_moment"] == 2 * one_map
    kept = attention_call_phases(sizes, 0.0, 2, backward=False, eager=True, maps_kept=True)
    assert kept[0]["eager_kept"] == 6 * one_map and kept[1]["captured"] == 2 * 6 * sizes.layer_bytes
    assert kept[1]["captured_maps"] == 6 * one_map
    assert "eager_kept" not in attention_call_phases(sizes, 0.0, 3, backward=True, eager=False, maps_kept=False)[0]


def test_relative_position_biases_are_counted_once_each():
    per_layer = transformers.BeitConfig(num_hidden_layers=5, use_relative_position_bias=True)
    shared = transformers.BeitConfig(num_hidden_layers=5, use_relative_position_bias=False, use_shared_relative_position_bias=True)
    assert [_position_biases(config) for config in (per_layer, shared, transformers.ViTConfig())] == [5, 1, 0]
    one_bias = 4 * 100 * 100 * 4  # (1, 4, 100, 100) in float32, whatever the batch
    with_biases = replace(_sizes(batch=3), biases=5)
    # and one layer's (3, 4, 100, 100) scores, which the kernel may build from a float mask
    assert live_bytes(attention_call_phases(with_biases, 3.0, 3, False, False, False)[1:]) - live_bytes(
        attention_call_phases(_sizes(batch=3), 3.0, 3, False, False, False)[1:]
    ) == pytest.approx(5 * one_bias + 3 * one_bias)


def test_cp_lrp_under_eager_attention_holds_no_gradient_of_the_probabilities():
    """AttnLRP's relevance flows through the probabilities, so an eager layer's backward pass
    holds the gradients of its scores and probabilities: two (B, H, T, T) maps more than
    CP-LRP, which holds the probabilities constant; under sdpa neither holds maps."""
    sizes = _sizes()
    one_map = 4 * 100 * 100 * 4
    (attnlrp,), (cplrp,) = (relevance_call_phases(sizes, True, gradient) for gradient in (True, False))
    assert attnlrp["eager_moment"] - cplrp["eager_moment"] == 2 * one_map
    assert relevance_call_phases(sizes, False, True) == relevance_call_phases(sizes, False, False)


@pytest.mark.parametrize("eager", [False, True])
def test_the_relevance_estimate_grows_with_every_dimension(eager):
    def need(**changed: int) -> float:
        return live_bytes(relevance_call_phases(_sizes(**changed), eager, True))

    base = need()
    assert need(batch=3) == pytest.approx(3 * base)
    for grown in (need(tokens=200), need(layers=12), need(hidden=256), need(itemsize=8)):
        assert grown > base
    assert (need(heads=8) > base) == eager  # only an eager attention keeps (B, H, T, T) maps


def test_on_a_cpu_the_phases_add_up_and_an_eager_attentions_maps_count_again_up_to_a_bound(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    fixed = _FIXED_BYTES + 8 * _PER_THREAD_BYTES  # and each thread's buffers
    phases = attention_call_phases(_sizes(tokens=500), 3.0, 3, True, False, False)
    assert estimated_bytes(phases, resident=False) == int(LIVE_MARGIN * live_bytes(phases))
    passes, building = phases
    # what the capture keeps is alive in both phases: counted once
    added_up = live_bytes((passes,)) + live_bytes((building,)) - building["captured"] * COEFFICIENTS["captured"]
    assert estimated_bytes(phases, resident=True) == pytest.approx(RESIDENT_FACTOR * LIVE_MARGIN * added_up + fixed, abs=2)

    def eager(tokens: int) -> tuple[float, float]:
        """The CPU estimate of an eager call whose passes peak, and that call's live part."""
        phases = attention_call_phases(_sizes(tokens=tokens, hidden=8), 0.0, 2, True, True, False)
        return estimated_bytes(phases, resident=True), RESIDENT_FACTOR * LIVE_MARGIN * live_bytes(phases) + fixed

    one_map = 4 * 500**2 * 4
    estimate, live = eager(500)
    assert estimate - live == pytest.approx(_RESIDENT_EAGER * (6 + 4) * one_map, abs=2)  # the maps kept and of the moment
    estimate, live = eager(5000)
    assert estimate - live == pytest.approx(_HEAP_RETAINED_MAX, abs=2)  # 10 GB of maps: the bound


def test_blocks_above_glibcs_largest_mmap_threshold_are_served_by_mmap_and_count_once_on_a_cpu(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    monkeypatch.setattr(allocator_module, "malloc_defaults", lambda: True)
    fixed = _FIXED_BYTES + 8 * _PER_THREAD_BYTES
    assert set(smallest_blocks(_sizes())) == set(COEFFICIENTS)  # a new term is placed, heap or not
    # one image's (T, T) float32 map: 32 MiB at 2,896 tokens, above it at 2,897
    assert "maps" not in mmapped_terms(_sizes(tokens=2896)) and "maps" in mmapped_terms(_sizes(tokens=2897))
    # an eager attention's (B, H, T, T) maps in the model's dtype: 32 MiB in float16 at 2,048 tokens and 4 heads
    eager = {"eager_kept", "eager_moment", "captured_maps"}
    assert not eager & mmapped_terms(_sizes(tokens=2048, itemsize=2)) and eager <= mmapped_terms(_sizes(tokens=2049, itemsize=2))
    assert eager <= mmapped_terms(_sizes(tokens=2048, itemsize=4))
    # the layers' terms by one (B, T, D) tensor; the capture's and the images' always on the heap
    assert "graph" not in mmapped_terms(_sizes(tokens=2897)) and "graph" in mmapped_terms(_sizes(batch=64, tokens=2897))
    assert not {"captured", "pass_images", "maps_images"} & mmapped_terms(_sizes(batch=4096, tokens=2897))
    assert mmapped_terms(_sizes()) == frozenset()

    phases = attention_call_phases(_sizes(tokens=500), 3.0, 3, True, False, False)
    everything = frozenset(COEFFICIENTS)
    # nothing on the heap: the live tensors, as CUDA counts them, and the fixed part
    assert estimated_bytes(phases, True, everything) == int(LIVE_MARGIN * live_bytes(phases) + fixed)
    # the maps by mmap: counted once, beside the heap of both phases scaled (what the
    # capture keeps is alive in both: counted once)
    passes, building = phases
    heap = live_bytes((passes,)) + live_bytes(({term: size for term, size in building.items() if term not in ("maps", "captured")},))
    expected = LIVE_MARGIN * (RESIDENT_FACTOR * heap + COEFFICIENTS["maps"] * building["maps"])
    assert estimated_bytes(phases, True, frozenset({"maps"})) == pytest.approx(expected + fixed, abs=2)
    assert estimated_bytes(phases, True, frozenset({"maps"})) < estimated_bytes(phases, True)
    # beyond the bound on freed blocks kept, the passes' heap is still there
    # while the maps are built: blocks the capture kept pin it, and mmap does not reuse it
    phases = attention_call_phases(_sizes(tokens=3000, hidden=384), 3.0, 3, True, False, False)
    passes, building = phases
    heap = live_bytes(({term: size for term, size in building.items() if term != "maps"},))
    assert LIVE_MARGIN * RESIDENT_FACTOR * (live_bytes((passes,)) - heap) > _HEAP_RETAINED_MAX
    expected = LIVE_MARGIN * (RESIDENT_FACTOR * live_bytes((passes,)) + COEFFICIENTS["maps"] * building["maps"])
    assert estimated_bytes(phases, True, frozenset({"maps"})) == pytest.approx(expected + fixed, abs=2)


def test_the_attention_time_grows_with_the_square_of_the_tokens_and_counts_the_backward_pass(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # the CPU
    cpu = torch.device("cpu")

    def seconds(batch=1, tokens=1000, layers=12, hidden=384, backward=True, device=cpu) -> float:
        return attention_seconds(batch, tokens, layers, hidden, backward, device)

    base = seconds()
    with monkeypatch.context() as more_threads:
        more_threads.setattr(torch, "get_num_threads", lambda: 4)
        assert seconds() == pytest.approx(base / 2)
    assert seconds(tokens=2000) == pytest.approx(4 * base)
    assert seconds(batch=3) == pytest.approx(3 * base)
    assert seconds(layers=24) == pytest.approx(2 * base) and seconds(hidden=768) == pytest.approx(2 * base)
    assert seconds(backward=False) < base
    assert seconds(device=torch.device("cuda")) < base  # an accelerator is taken as faster than a CPU
    # the case on DINOv2-S/14: one 4096 px image (85,265 tokens) is far too slow on a CPU,
    # one 1024 px image (5,330 tokens) is not
    assert seconds(tokens=85_265) > SLOW_CALL_SECONDS > seconds(tokens=5_330)


@pytest.fixture(scope="module")
def dinov2_small_shaped() -> torch.nn.Module:
    """A DINOv2-S/14-shaped classifier (12 layers, 6 heads, 384 wide), random weights."""
    torch.manual_seed(0)
    config = transformers.Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, patch_size=14, num_labels=3)
    return transformers.Dinov2ForImageClassification(config).eval()


@pytest.mark.parametrize("method", METHODS)
def test_a_call_too_slow_is_refused_before_any_forward_pass_unless_allowed(dinov2_small_shaped, monkeypatch, method):
    monkeypatch.setattr(guard_module, "available_bytes", lambda device: None)  # memory is not the question here
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # the CPU
    explainer = method(dinov2_small_shaped)
    passes = []
    handle = dinov2_small_shaped.register_forward_pre_hook(lambda module, args: passes.append(1))
    photo = torch.zeros(1, 3, 4096, 4096)  # 85,265 tokens
    message = (
        rf"^{re.escape(explainer.get_name())} on 1 image\(s\) of 4096x4096 px \(85,265 tokens, 6 heads\) would take at least "
        r"[\d,]+ minutes on cpu: resize the images \(.*time grows with the side to the 4th power\), "
        r"or pass allow_slow=True to run it anyway$"
    )
    try:
        with pytest.raises(TooSlowError, match=message):
            explainer.attribute(photo, target=0)
        explainer.check_memory(photo.shape, allow_slow=True)  # what allow_slow=True lets through
        monkeypatch.setattr(guard_module, "MEASURE_ABOVE_SECONDS", float("inf"))  # no timing of 1024 px here
        explainer.check_memory((1, 3, 1024, 1024))  # 5,330 tokens: not refused by the bound
    finally:
        handle.remove()
    assert not passes


def test_available_bytes_on_the_cpu():
    available = available_bytes(torch.device("cpu"))
    assert available is None or 0 < available < 2**50
    assert available_bytes(torch.device("meta")) is None


def test_the_fit_of_the_per_image_time():
    def exact(tokens: int) -> float:
        return 2e-9 * tokens**2 + 3e-6 * tokens

    assert fitted_seconds([(1000, exact(1000)), (2000, exact(2000))], 20_000) == pytest.approx(exact(20_000))
    # noise that makes a coefficient negative: the other carries the time alone, never less than measured
    assert fitted_seconds([(1000, 1.0), (2000, 1.5)], 4000) == pytest.approx(4.0)  # a < 0: linear from the slower probe
    assert fitted_seconds([(1000, 1.0), (2000, 5.0)], 4000) == pytest.approx(20.0)  # b < 0: quadratic from the slower probe
    assert probe_tokens(85_265) == (2048, 4096) and probe_tokens(5_330) == (666, 1332)


@pytest.mark.parametrize(
    "batch, timed",
    [(1, "timed on this device at [\\d,]+ and [\\d,]+ tokens, times 2 for the extrapolation"), (4, "one image timed on this device")],
)
def test_a_call_whose_bound_is_low_but_whose_timed_estimate_is_too_slow_is_refused(load_tiny, monkeypatch, batch, timed):
    """The lower bound lets the call through; the time measured on smaller inputs (or one image
    of the call) does not: the estimate comes from this device's throughput."""
    monkeypatch.setattr(guard_module, "available_bytes", lambda device: None)
    monkeypatch.setattr(guard_module, "MEASURE_ABOVE_SECONDS", 0.0)  # time every call
    explainer = GMARAttribution(load_tiny("ViTForImageClassification"))
    vit = explainer.vit
    bound = attention_seconds(batch, vit.num_tokens(256, 256), vit.num_layers, vit.hidden_size, True, torch.device("cpu"))
    monkeypatch.setattr(guard_module, "SLOW_CALL_SECONDS", 1.5 * bound)  # the bound passes; the real time is several times it
    with pytest.raises(TooSlowError, match=rf"would take about \({timed}\) [\d,.]+ minutes on cpu"):
        explainer.attribute(torch.zeros(batch, 3, 256, 256), target=0)
    monkeypatch.setattr(guard_module, "SLOW_CALL_SECONDS", 600.0)
    assert explainer.attribute(torch.zeros(batch, 3, 256, 256), target=0).shape == (batch, 3, 256, 256)
