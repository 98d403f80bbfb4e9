"""Reading a data set's maps back as strategies: :func:`find_strategies` clusters the maps
of one class (SpRAy, pure, over arrays) and :func:`find_disagreement` measures where
methods disagree, image by image. scikit-learn and SciPy (the ``explore`` extra) are
imported only when they run."""

from .disagreement import Disagreement, find_disagreement
from .strategies import Cluster, Strategies, find_strategies

__all__ = ["Cluster", "Disagreement", "Strategies", "find_disagreement", "find_strategies"]
