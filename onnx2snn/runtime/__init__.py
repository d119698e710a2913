"""Sessions, execution forms, providers, decoding and evaluation."""

from .providers import resolve_providers, usable_providers
from .session import SNNSession

__all__ = ["SNNSession", "resolve_providers", "usable_providers"]
