"""A data set's explanation kept on disk: :func:`explain_dataset` writes every map of
every image to a folder (:mod:`~captum_gmar.dataset_maps.storage`: safetensors shards and
a CSV index, readable without this package), :func:`load_maps` reads them back, and
:func:`read_maps` many records' maps at once."""

from .job import explain_dataset
from .storage import MapRecord, MapRecords, load_maps, read_maps

__all__ = ["MapRecord", "MapRecords", "explain_dataset", "load_maps", "read_maps"]
