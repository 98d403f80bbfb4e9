"""The planted-shortcut benchmark: ``python -m tools.shortcut.train`` fine-tunes the
``vit-tiny`` reference model on scenes where a share of one class carries a tag, and
``python -m tools.shortcut.benchmark`` explains that class and checks whether each
method's strategies find the tag (see docs/results.md)."""
