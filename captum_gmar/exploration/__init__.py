"""Reading a data set's maps back as strategies: :func:`find_strategies` clusters the maps
of one class (SpRAy, pure, over arrays). scikit-learn and SciPy (the ``explore`` extra)
are imported only when it runs."""

from .strategies import Cluster, Strategies, find_strategies

__all__ = ["Cluster", "Strategies", "find_strategies"]
