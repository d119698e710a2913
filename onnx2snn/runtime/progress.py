"""Progress bars over samples x steps (tqdm), or nothing."""

from __future__ import annotations

from typing import Any


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total_steps: int, enabled: bool) -> Any:
    """A bar counting image-steps that ``update(n)`` advances, or one that shows nothing."""
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total_steps, unit="img*step", unit_scale=True, leave=False, dynamic_ncols=True)
