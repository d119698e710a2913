"""The training loop: a function of (module, data, optimizer settings, seed) and nothing else, so
that a data-parallel worker can call it on its shard.

Each epoch draws one seeded permutation of the whole training set (``seed`` and the epoch
number decide it) and cuts it into global batches of ``batch_size``; a worker ``rank`` of
``world`` takes its contiguous share of every global batch. With gradients averaged over equal
shares (PyTorch DDP), the global batch and the seed decide the result, not the number of workers.

Optimizer: SGD with momentum and weight decay (the original research script's fine-tuning),
the learning rate times ``gamma`` at each of ``milestones`` (fractions of the epochs: x0.1 at
50% and 75% by default), cross entropy on the decoded output."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from .options import TrainOptions


def global_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The epoch's batches of sample indices: a permutation drawn from (seed, epoch)."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def shard(batch: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Worker ``rank``'s contiguous share of a global batch."""
    bounds = np.linspace(0, len(batch), world + 1).round().astype(int)
    return batch[bounds[rank] : bounds[rank + 1]]


def batches(
    x: np.ndarray, y: np.ndarray, options: TrainOptions, epoch: int, rank: int = 0, world: int = 1
) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """(inputs, labels, size of the global batch) of this worker's share of every global batch;
    with several workers a share may be empty (every worker takes every step together)."""
    for batch in global_batches(len(x), options.batch_size, options.seed, epoch):
        idx = np.sort(shard(batch, rank, world))
        if len(idx) or world > 1:
            yield x[idx], y[idx], len(batch)


def fit(
    module: torch.nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    options: TrainOptions,
    groups: Sequence[tuple[Sequence[torch.nn.Parameter], float, float]],
    *,
    device: str = "cpu",
    rank: int = 0,
    world: int = 1,
    after_step: Callable[[], None] | None = None,
    progress: bool = False,
    forward: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor] | None = None,
) -> list[dict]:
    """Train ``module`` on (x, y) for ``options.epochs``; returns the per-epoch log
    (``epoch``, ``lr``, ``loss``, ``accuracy`` on the training batches as seen, ``seconds``).

    ``groups``: (parameters, learning-rate factor, weight decay) per parameter group;
    ``forward(module, x)`` gives the logits (``module(x)`` by default); ``after_step`` runs
    after every optimizer step (e.g. to keep thresholds positive)."""
    torch.manual_seed(options.seed)
    forward = forward or (lambda m, batch: m(batch))
    param_groups = [
        {"params": list(params), "lr": options.lr * factor, "weight_decay": decay, "factor": factor}
        for params, factor, decay in groups
        if len(params)
    ]
    optimizer = torch.optim.SGD(param_groups, lr=options.lr, momentum=options.momentum)
    log = []
    steps = math.ceil(len(x) / options.batch_size)
    for epoch in range(options.epochs):
        lr = options.lr_at(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["factor"]
        module.train()
        began = time.perf_counter()
        total_loss, correct, seen = 0.0, 0, 0
        bar = _bar(steps, f"epoch {epoch + 1}/{options.epochs}", progress)
        for xb, yb, whole in batches(x, y, options, epoch, rank, world):
            optimizer.zero_grad(set_to_none=True)
            if len(yb):
                inputs = torch.from_numpy(xb).to(device)
                labels = torch.from_numpy(yb.astype(np.int64)).to(device)
                logits = forward(module, inputs)
                if world == 1:
                    loss = torch.nn.functional.cross_entropy(logits, labels)
                else:  # DDP averages over workers: each share's sum over the global batch, times world
                    loss = torch.nn.functional.cross_entropy(logits, labels, reduction="sum") * (world / whole)
            else:  # an empty share still runs DDP's forward and joins the gradient exchange, with zeros
                logits = forward(module, torch.from_numpy(x[:1]).to(device))
                loss = logits.sum() * 0.0
            if not _finite_everywhere(loss, world):  # every worker stops together, none waits for the others
                raise ConfigError(f"the loss became {loss.item()} in epoch {epoch + 1}: lower the learning rate")
            if len(yb):
                mean = float(loss.detach()) * (whole / world / len(yb) if world > 1 else 1.0)
                total_loss += mean * len(yb)
                correct += int((logits.detach().argmax(dim=-1) == labels).sum())
                seen += len(yb)
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step()
            bar.update(1)
            bar.set_postfix(loss=f"{total_loss / max(seen, 1):.4f}", acc=f"{correct / max(seen, 1):.4f}", refresh=False)
        bar.close()
        if world > 1:  # the epoch's figures over every worker's share
            total_loss, correct, seen = _sum_over_workers(total_loss, correct, seen, device)
        log.append(
            {
                "epoch": epoch + 1,
                "lr": lr,
                "loss": total_loss / max(seen, 1),
                "accuracy": correct / max(seen, 1),
                "samples": seen,
                "seconds": round(time.perf_counter() - began, 2),
            }
        )
    module.eval()
    return log


def _distributed() -> Any:
    """torch.distributed where a process group runs (data-parallel workers), else None."""
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def _finite_everywhere(loss: torch.Tensor, world: int) -> bool:
    finite = bool(torch.isfinite(loss))
    dist = _distributed() if world > 1 else None
    if dist is None:
        return finite
    flag = torch.tensor([0.0 if finite else 1.0], device=loss.device)
    dist.all_reduce(flag)
    return float(flag) == 0.0


def _sum_over_workers(total_loss: float, correct: int, seen: int, device: str) -> tuple[float, int, int]:
    dist = _distributed()
    if dist is None:
        return total_loss, correct, seen
    sums = torch.tensor([total_loss, float(correct), float(seen)], dtype=torch.float64, device=device)
    dist.all_reduce(sums)
    return float(sums[0]), int(sums[1]), int(sums[2])


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def set_postfix(self, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, description: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="batch", leave=True, dynamic_ncols=True)
