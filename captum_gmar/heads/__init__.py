"""Which heads carry a strategy, and the model without them: :func:`locate_heads` contrasts
every head score with the exact effect of ablating each head between two sets of images;
:func:`without_heads` writes a head's removal into a copy of the model's weights."""

from .locate import HeadLocation, locate_heads
from .remove import without_heads

__all__ = ["HeadLocation", "locate_heads", "without_heads"]
