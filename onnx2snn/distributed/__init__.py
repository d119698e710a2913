"""Work spread over processes and machines with Ray (the ``ray`` extra): evaluation and
conversion's calibration, each identical to one process's, and data-parallel fine-tuning
(Ray Train), the same loss curve as one process within float noise."""

from .cluster import cluster, run_shards
from .convert import convert
from .evaluate import evaluate
from .finetune import finetune

__all__ = ["cluster", "convert", "evaluate", "finetune", "run_shards"]
