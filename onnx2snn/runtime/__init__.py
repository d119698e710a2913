"""Sessions, execution forms, providers, decoding and evaluation."""

from .activity import activity, format_activity
from .evaluate import evaluate, model_inputs, run_ann
from .providers import ann_session, resolve_providers, usable_providers
from .session import SNNSession
from .unrolled import unroll

__all__ = [
    "SNNSession",
    "activity",
    "ann_session",
    "evaluate",
    "format_activity",
    "model_inputs",
    "resolve_providers",
    "run_ann",
    "unroll",
    "usable_providers",
]
