"""Reading a data set's maps back as strategies: :func:`find_strategies` clusters the maps
of one class (SpRAy, pure, over arrays), :func:`find_disagreement` measures where methods
disagree image by image, and :func:`explore` runs both on a maps folder and writes what
the explorer page reads. scikit-learn and SciPy (the ``explore`` extra) are imported
only when these run."""

from .disagreement import Disagreement, find_disagreement
from .folder import explore
from .result import Exploration
from .strategies import Cluster, Strategies, find_strategies

__all__ = ["Cluster", "Disagreement", "Exploration", "Strategies", "explore", "find_disagreement", "find_strategies"]
