"""Fine-tuning settings, with the original research script's defaults (SGD, lr 0.005, momentum
0.9, weight decay 5e-4, batch 64, 5 epochs, x0.1 at 50% and 75% of the epochs). No torch here:
the command line reads the defaults without importing it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class TrainOptions:
    """Optimizer settings of one fine-tuning run, validated when made."""

    epochs: int = 5
    lr: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    seed: int = 0
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    neuron_lr_scale: float = 1.0  # learning rate of thresholds and corrections, relative to lr

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs <= 0:
            raise ConfigError(f"epochs must be a positive integer, got {self.epochs}")
        if not isinstance(self.batch_size, int) or self.batch_size <= 0:
            raise ConfigError(f"batch_size must be a positive integer, got {self.batch_size}")
        for name in ("lr", "momentum", "weight_decay", "neuron_lr_scale"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.momentum >= 1:
            raise ConfigError(f"momentum must lie in [0, 1), got {self.momentum}")

    def to_dict(self) -> dict:
        return asdict(self)

    def lr_at(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (0-based): x gamma at every milestone passed."""
        passed = sum(epoch >= int(self.epochs * m) for m in self.milestones if int(self.epochs * m) > 0)
        return self.lr * self.gamma**passed

    @classmethod
    def make(cls, base: TrainOptions, **changes) -> TrainOptions:
        """``base`` with ``changes`` (None leaves a field as it is), or a ConfigError naming an
        unknown one."""
        fields = base.to_dict()
        unknown = [k for k in changes if k not in fields]
        if unknown:
            raise ConfigError(f"unknown training option {', '.join(unknown)}: use {', '.join(fields)}")
        fields.update({k: v for k, v in changes.items() if v is not None})
        fields["milestones"] = tuple(fields["milestones"])
        return cls(**fields)


# the original research script's fine-tuning of the quantized ANN
ANN_DEFAULTS = TrainOptions()
# spiking fine-tuning: shorter (each epoch runs T steps), one x0.1 step at half-way (with the
# ANN's two steps, both at epoch 2 of 2, the second epoch hardly trains); see benchmarks/training.py
SNN_DEFAULTS = TrainOptions(epochs=2, milestones=(0.5,))
