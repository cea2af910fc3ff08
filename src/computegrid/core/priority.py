"""Multi-factor job priority, after Slurm's priority/multifactor plugin.

Slurm (https://slurm.schedmd.com/priority_multifactor.html) computes

    Job_priority = PriorityWeightAge * age_factor + PriorityWeightFairshare * fair-share_factor
                   + PriorityWeightQOS * QOS_factor + ...

with every factor a number in [0, 1]. We keep four of its factors:

- age: time waiting (ms), linear up to `max_age_ms` (Slurm's PriorityMaxAge, default 7 days), then 1;
- class: the job's priority class, 0 low, 1 normal, 2 high, as class / 2 (our QOS);
- fair share: Slurm's classic formula F = 2^(-U/S), where U is the tenant's share of all recent usage
  (usage decayed with a half-life, Slurm's PriorityDecayHalfLife, default 7 days) and S its share of all
  shares (Tenant.fair_share / the sum over tenants);
- package: the priority of the training package the job's tenant held at submission, over the highest
  package priority among the jobs being ordered (as Slurm normalises partition priority by the highest).

Weights are integers (`Weights`); the defaults and why they are what they are: docs/decisions/
2026-12-06-multifactor-weights.md. Everything is a pure function of its arguments: time comes in as ms.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

MS_PER_DAY = 86_400_000
#: Slurm's defaults for PriorityMaxAge (7-0) and PriorityDecayHalfLife (7-0)
DEFAULT_MAX_AGE_MS = 7 * MS_PER_DAY
DEFAULT_HALF_LIFE_MS = 7 * MS_PER_DAY
HIGHEST_CLASS = 2  # 0 low, 1 normal, 2 high


@dataclass(frozen=True)
class Weights:
    """Integer weights of the four factors, and the age cap and usage half-life (ms).

    The class weight is larger than the other three together, so a higher class always goes first; fair
    share then outweighs a week of waiting, and a package's priority counts as much as a week of waiting.
    """

    age: int = 1000
    job_class: int = 10_000
    fair_share: int = 2000
    package: int = 1000
    max_age_ms: int = DEFAULT_MAX_AGE_MS
    half_life_ms: int = DEFAULT_HALF_LIFE_MS

    def __post_init__(self) -> None:
        for name in ("age", "job_class", "fair_share", "package"):
            if getattr(self, name) < 0:
                raise ValueError(f"priority weight {name} must not be negative")
        if self.max_age_ms <= 0 or self.half_life_ms <= 0:
            raise ValueError("max_age_ms and half_life_ms must be positive")


DEFAULT_WEIGHTS = Weights()


def age_factor(submitted_ms: int, now_ms: int, max_age_ms: int = DEFAULT_MAX_AGE_MS) -> float:
    """Time waiting over `max_age_ms`, in [0, 1] (a job submitted in the future counts as 0)."""
    return min(max(now_ms - submitted_ms, 0), max_age_ms) / max_age_ms


def class_factor(priority_class: int) -> float:
    """0 low -> 0, 1 normal -> 0.5, 2 high -> 1 (clamped to that range)."""
    return min(max(priority_class, 0), HIGHEST_CLASS) / HIGHEST_CLASS


def decay(usage: float, elapsed_ms: int, half_life_ms: int = DEFAULT_HALF_LIFE_MS) -> float:
    """`usage` (any unit) after `elapsed_ms` of exponential decay with the given half-life."""
    return float(usage * 2.0 ** (-max(elapsed_ms, 0) / half_life_ms))


def decayed_interval(start_ms: int, end_ms: int, now_ms: int, half_life_ms: int = DEFAULT_HALF_LIFE_MS) -> float:
    """Device-seconds of one device held over [start_ms, end_ms], each instant decayed to `now_ms`.

    The integral of 2^(-(now - t) / H) dt over the interval, in seconds; the part after `now_ms` is not counted.
    """
    end = min(end_ms, now_ms)
    if end <= start_ms:
        return 0.0
    h = half_life_ms / 1000.0
    return float(h / math.log(2) * (2.0 ** (-(now_ms - end) / half_life_ms)
                                    - 2.0 ** (-(now_ms - start_ms) / half_life_ms)))


def fair_share_factors(shares: Mapping[str, int], usage: Mapping[str, float]) -> dict[str, float]:
    """Per tenant, F = 2^(-U/S): U its share of the total decayed usage, S its share of all shares.

    `shares`: positive integer weights (Tenant.fair_share); a tenant in `usage` but not in `shares` has
    weight 1. With no usage at all every tenant gets 1.
    """
    tenants = set(shares) | set(usage)
    weight = {t: max(int(shares.get(t, 1)), 1) for t in tenants}
    total_shares = sum(weight.values())
    total_usage = sum(max(u, 0.0) for u in usage.values())
    out: dict[str, float] = {}
    for t in tenants:
        u = max(usage.get(t, 0.0), 0.0) / total_usage if total_usage > 0 else 0.0
        s = weight[t] / total_shares
        out[t] = 2.0 ** (-u / s)
    return out


@dataclass(frozen=True, slots=True)
class PriorityInputs:
    """What the multi-factor priority of one waiting job depends on."""

    job_id: int
    submitted_ms: int
    priority_class: int = 1
    package_priority: int = 0
    tenant: str = ""


def job_priority(job: PriorityInputs, now_ms: int, fair_share: Mapping[str, float], max_package: int,
                 weights: Weights = DEFAULT_WEIGHTS) -> float:
    """w_age * age + w_class * class + w_fairshare * F(tenant) + w_package * package (see the module docstring).

    `fair_share`: tenant -> factor from `fair_share_factors` (a tenant not listed gets 1);
    `max_package`: the highest package priority among the jobs being ordered (0: the factor is 0).
    """
    package = min(max(job.package_priority, 0), max_package) / max_package if max_package > 0 else 0.0
    return (weights.age * age_factor(job.submitted_ms, now_ms, weights.max_age_ms)
            + weights.job_class * class_factor(job.priority_class)
            + weights.fair_share * fair_share.get(job.tenant, 1.0)
            + weights.package * package)


class PriorityJob(Protocol):
    """What the multi-factor order reads of a job: `PriorityInputs`, or a caller's record with these fields."""

    @property
    def job_id(self) -> int: ...
    @property
    def submitted_ms(self) -> int: ...
    @property
    def priority_class(self) -> int: ...
    @property
    def package_priority(self) -> int: ...
    @property
    def tenant(self) -> str: ...


J = TypeVar("J", bound=PriorityJob)


def multifactor_order(jobs: Iterable[J], now_ms: int, shares: Mapping[str, int],
                      usage: Mapping[str, float], weights: Weights = DEFAULT_WEIGHTS) -> list[J]:
    """The jobs, highest priority first; ties by submission time, then job id (deterministic).

    `shares`: tenant -> fair-share weight; `usage`: tenant -> decayed usage (device-seconds) at `now_ms`.
    """
    listed = list(jobs)
    if not listed:
        return []
    factors = fair_share_factors(shares, usage)
    max_package = max(j.package_priority for j in listed)
    # `job_priority` as vectors, term by term in its order of addition, so every sum is bit for bit the one it
    # computes: ms below 2^53 convert to float exactly and IEEE division, product and sum are correctly rounded
    # in both. The terms that take few values (class, tenant, package) are computed once per value.
    n = len(listed)
    submitted = np.fromiter((j.submitted_ms for j in listed), dtype=np.int64, count=n)
    job_ids = np.fromiter((j.job_id for j in listed), dtype=np.int64, count=n)
    waited = np.minimum(np.maximum(now_ms - submitted, 0), weights.max_age_ms)
    age = weights.age * (waited / weights.max_age_ms)
    classes = {c: weights.job_class * class_factor(c) for c in {j.priority_class for j in listed}}
    tenants = {t: weights.fair_share * factors.get(t, 1.0) for t in {j.tenant for j in listed}}
    packages = {p: weights.package * (min(max(p, 0), max_package) / max_package if max_package > 0 else 0.0)
                for p in {j.package_priority for j in listed}}
    priority = (age + np.fromiter((classes[j.priority_class] for j in listed), dtype=np.float64, count=n)) \
        + np.fromiter((tenants[j.tenant] for j in listed), dtype=np.float64, count=n)
    priority = priority + np.fromiter((packages[j.package_priority] for j in listed), dtype=np.float64, count=n)
    order = np.lexsort((job_ids, submitted, -priority))  # highest first, then earliest, then lowest id
    return [listed[i] for i in order.tolist()]
