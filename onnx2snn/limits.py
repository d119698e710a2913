"""Bounds on what a call may ask for, checked before any work starts.

- Parameters: integers and reals in range (numpy scalars count as numbers, booleans do not),
  or a ConfigError naming the parameter.
- Timesteps: at most MAX_TIMESTEPS. A run's time grows with T (and conversion simulates T
  steps per layer), so T is bounded like memory is.
- Memory: a run estimates what it needs (states x batch, outputs kept x T x samples, ...) and
  compares it with its budget (``max_memory``, ``--max-memory``) and with what this process can
  still get (free memory and swap, and the address-space limit ``ulimit -v`` if one is set);
  past either it is refused with the figure and what changes it, before anything is allocated.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path

try:
    import resource
except ImportError:  # not on Windows: no address-space limit to read
    resource = None

from .errors import ConfigError

MAX_TIMESTEPS = 65_536  # 2**16 steps: a rate resolution of 1.5e-5, far past where accuracy stops moving


def as_int(value: object, name: str, minimum: int | None = 1, maximum: int | None = None) -> int:
    """``value`` as an int in [minimum, maximum], or a ConfigError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer, got {value!r}", option=name)
    value = int(value)
    if minimum is not None and value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{name} must be {what}, got {value}", option=name)
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum:,}, got {value:,}", option=name)
    return value


def as_float(value: object, name: str) -> float:
    """``value`` as a finite float, or a ConfigError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, got {value!r}", option=name)
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}", option=name)
    return value


def as_timesteps(value: object, name: str = "timesteps") -> int:
    """A number of timesteps: an integer in [1, MAX_TIMESTEPS]."""
    return as_int(value, name, 1, MAX_TIMESTEPS)


def format_bytes(n: float) -> str:
    """``n`` bytes for a message, in binary units as ``--max-memory`` counts them: '640 MiB',
    '12.8 GiB', '23 TiB'."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"
    return f"{int(n)} bytes"


def _meminfo(*keys: str) -> int | None:
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        return sum(int(fields[k].split()[0]) * 1024 for k in keys)
    except (OSError, KeyError, ValueError):
        return None


def _address_space_left() -> int | None:
    """Bytes of address space this process may still map under ``ulimit -v``, None if unlimited."""
    if resource is None:
        return None
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return None
    try:
        status = Path("/proc/self/status").read_text()
        used = next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        return None
    return max(limit - used, 0)


def available_memory() -> int | None:
    """What this process can still allocate, as far as can be told (None: unknown): free
    memory and swap, and at most what the address-space limit leaves."""
    known = [n for n in (_meminfo("MemAvailable", "SwapFree"), _address_space_left()) if n is not None]
    return min(known) if known else None


def require_memory(needed: int, what: str, change: str, budget: int | None = None) -> None:
    """Refuse (ConfigError, option ``max_memory``) when ``needed`` bytes for ``what`` exceed
    ``budget`` or what the process can still get; ``change`` says which options lower it."""
    if budget is not None and needed > budget:
        raise ConfigError(
            f"{what} needs about {format_bytes(needed)}, over the memory budget of {format_bytes(budget)} "
            f"(max_memory, --max-memory): {change}",
            option="max_memory",
        )
    left = available_memory()
    if left is not None and needed > left:
        raise ConfigError(
            f"{what} needs about {format_bytes(needed)}, more than the {format_bytes(left)} this process can "
            f"still get: {change}",
            option="max_memory",
        )
