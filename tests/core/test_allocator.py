"""Which blocks glibc keeps resident: the allocator's defaults read from the environment."""

import os

import pytest

import captum_gmar.core.allocator as allocator_module
from captum_gmar.core.allocator import mmapped_terms
from captum_gmar.core.memory import CallSizes


def _sizes(tokens: int) -> CallSizes:
    return CallSizes(1, tokens, 4, 6, 128, 4, pixels=3 * 80 * 80)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MALLOC_MMAP_THRESHOLD_", "268435456"),
        ("MALLOC_MMAP_MAX_", "0"),
        ("GLIBC_TUNABLES", "glibc.malloc.mmap_max=0"),
        ("LD_PRELOAD", "libjemalloc.so.2"),
    ],
)
def test_under_another_allocator_or_settings_every_block_counts_as_a_heap_block(monkeypatch, variable, value):
    # glibc serves a 100 MiB block from its heap with any of these (measured on glibc 2.36)
    monkeypatch.setattr(allocator_module.platform, "libc_ver", lambda: ("glibc", "2.36"))
    for name in [name for name in os.environ if name.startswith("MALLOC_")] + ["LD_PRELOAD", "GLIBC_TUNABLES"]:
        monkeypatch.delenv(name, raising=False)
    large = _sizes(tokens=4097)
    assert "maps" in mmapped_terms(large)
    monkeypatch.setenv(variable, value)
    assert mmapped_terms(large) == frozenset()
    monkeypatch.setattr(allocator_module.platform, "libc_ver", lambda: ("", ""))  # musl, or macOS's allocator
    monkeypatch.delenv(variable)
    assert mmapped_terms(large) == frozenset()
