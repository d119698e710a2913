"""Work spread over processes and machines with Ray (the ``ray`` extra): evaluation now;
calibration and fine-tuning where noted in the README."""

from .cluster import Shard, cluster, run_shards
from .evaluate import evaluate

__all__ = ["Shard", "cluster", "evaluate", "run_shards"]
