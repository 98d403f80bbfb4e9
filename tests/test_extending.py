"""docs/extending.md's example runs as written: a toy method and a toy metric group,
registered the documented way, are computed by ``compare`` and found in its summary."""

from __future__ import annotations

import re
from pathlib import Path

import captum_gmar.evaluation.methods as methods_module
import captum_gmar.evaluation.metrics.registry as registry

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def test_a_registered_method_and_metric_group_are_in_the_comparisons_summary(monkeypatch):
    # registrations go into fresh tables, so that no other test sees the toys
    monkeypatch.setattr(methods_module, "_REGISTERED", {})
    monkeypatch.setattr(registry, "_REGISTERED", {})
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), flags=re.DOTALL | re.MULTILINE)
    namespace: dict = {}
    for number, block in enumerate(blocks, start=1):
        exec(compile(block, f"docs/extending.md, Python block {number}", "exec"), namespace)
    summary = {entry["method"]: entry for entry in namespace["summary"]}
    assert set(summary) == {"Attention rollout", "Centre bias"}
    for entry in summary.values():
        assert 0 < entry["map_maximum"] and "map_maximum_sem" in entry and "deletion_auc" in entry
    assert summary["Centre bias"]["map_maximum"] > 0.99  # the bump's peak, at the centre
    assert "map_maximum" in registry.metric_columns() and "centre" in methods_module.method_keys()
