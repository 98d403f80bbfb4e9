"""The reference models' training and maintenance scripts: ``python -m tools.reference.train``,
``python -m tools.reference.train_dinov2`` and ``python -m tools.reference.rebuild_samples``, run
from the repository root (see docs/reference-model.md)."""
