"""Ray as the engine that spreads work over processes and machines: a cluster to run on, shards
of a data spec, tasks that retry on their shard when a worker dies, progress over shards done."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..data import Shard
from ..errors import ConfigError

TASK_RETRIES = 3  # a task whose worker process dies is run again, on the same shard


def ray_module() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ConfigError("distributed runs need Ray: pip install 'onnx2snn[ray]'") from e
    return ray


@contextlib.contextmanager
def cluster(address: str | None = None, workers: int | None = None) -> Iterator[dict[str, Any]]:
    """A Ray cluster for the work inside: the one at ``address``, or (``address`` None or
    "local") a local one of ``workers`` processes, shut down afterwards. A cluster already
    running in this process is used as it is. Yields {"address", "workers"}: where the work
    runs and how many tasks it runs at once."""
    ray = ray_module()
    if workers is not None and workers <= 0:
        raise ConfigError(f"workers must be positive, got {workers}")
    started = False
    if not ray.is_initialized():
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address in (None, "local"):
            options["num_cpus"] = workers or os.cpu_count() or 1
        else:
            options["address"] = address
        try:
            ray.init(**options)
        except Exception as e:  # Ray raises ConnectionError, RuntimeError, ValueError, ... here
            where = "a local cluster" if address in (None, "local") else f"the Ray cluster at {address}"
            raise ConfigError(f"cannot start {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
        started = True
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        yield {"address": address or "local", "workers": min(workers or cpus, cpus) or 1}
    finally:
        if started:
            ray.shutdown()


def run_shards(
    function: Callable[..., Any],
    shards: Sequence[Shard],
    args: Sequence[Any],
    progress: bool = False,
    resources: dict[str, float] | None = None,
) -> list[Any]:
    """``function(shard, *args)`` for every shard as Ray tasks (retried on their shard when a
    worker dies), results in shard order; ``progress`` shows a bar of shards done."""
    ray = ray_module()
    task = ray.remote(max_retries=TASK_RETRIES, **(resources or {}))(function)
    refs = [ray.put(a) for a in args]  # each argument sent once, not once per shard
    pending = {task.remote(shard, *refs): i for i, shard in enumerate(shards)}
    results: list[Any] = [None] * len(shards)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(shards), unit="shard", leave=False, dynamic_ncols=True)
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                results[pending.pop(ref)] = ray.get(ref)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        for ref in pending:  # interrupted: nothing keeps running for us
            ray.cancel(ref, force=True)
    return results


def where() -> dict[str, Any]:
    """Where the calling task runs: node, process, and the GPUs Ray gave it."""
    ray = ray_module()
    context = ray.get_runtime_context()
    return {"node": context.get_node_id(), "pid": os.getpid(), "gpus": [str(g) for g in ray.get_gpu_ids()]}
