"""Work spread over processes and machines with Ray (the ``ray`` extra): evaluation and
conversion's calibration, each identical to one process's."""

from .cluster import cluster, run_shards
from .convert import convert
from .evaluate import evaluate

__all__ = ["cluster", "convert", "evaluate", "run_shards"]
