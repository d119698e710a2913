"""NIR (the Neuromorphic Intermediate Representation): artifacts written as NIR graphs for
neuromorphic simulators and chips (export.py), and NIR graphs read into artifacts that plain
onnxruntime runs (load.py). Needs the ``nir`` package (``pip install 'onnx2snn[nir]'``)."""

from .export import INITIAL_MEMBRANES, NIRExport, relay_shortcuts, save_nir, to_nir
from .load import RESETS, conventions, from_nir, read_nir

__all__ = [
    "INITIAL_MEMBRANES",
    "NIRExport",
    "RESETS",
    "conventions",
    "from_nir",
    "read_nir",
    "relay_shortcuts",
    "save_nir",
    "to_nir",
]
