"""Rules a job must pass when it is submitted: a deadline it can meet, and a priority class its tenant may use.

Pure: the current time is passed in (epoch milliseconds). Each check returns the reason
a job is refused, or None when it passes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from computegrid.core.jobs.spec import PRIORITY_CLASSES, JobSpec

DEFAULT_TENANT_CLASSES = ("low", "normal")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def deadline_problem(spec: JobSpec, now_ms: int) -> str | None:
    """Why the spec's deadline cannot be met when submitted at `now_ms`, or None.

    A deadline at or before now is past; with a `time_limit` (seconds), the job must be able
    to run that long from now and still end by the deadline.
    """
    if spec.deadline_ms is None:
        return None
    if spec.deadline_ms <= now_ms:
        return f"the deadline {_iso(spec.deadline_ms)} is already past (now is {_iso(now_ms)})"
    if spec.time_limit_s is not None and now_ms + spec.time_limit_s * 1000 > spec.deadline_ms:
        return (f"the deadline {_iso(spec.deadline_ms)} cannot be met: time_limit {spec.time_limit_s} s from now "
                f"({_iso(now_ms)}) ends at {_iso(now_ms + spec.time_limit_s * 1000)}")
    return None


def parse_class_list(text: str) -> tuple[str, ...]:
    """A tenant's stored comma list ('low,normal') as class names in rank order; unknown names are dropped."""
    given = {part.strip() for part in text.split(",")}
    return tuple(name for name in PRIORITY_CLASSES if name in given)


def normalise_class_list(names: Iterable[str]) -> tuple[str, ...]:
    """Class names an operator gives, checked and put in rank order; ValueError names what is wrong."""
    given = list(names)
    unknown = sorted({n for n in given if n not in PRIORITY_CLASSES})
    if unknown:
        raise ValueError(f"unknown priority class {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(PRIORITY_CLASSES)}")
    if not given:
        raise ValueError("give at least one priority class")
    return tuple(name for name in PRIORITY_CLASSES if name in set(given))


def class_problem(priority: str, allowed: tuple[str, ...], tenant: str) -> str | None:
    """Why `tenant` may not submit a job of class `priority`, or None when `allowed` includes it."""
    if priority in allowed:
        return None
    return (f"tenant {tenant!r} may not use priority {priority!r}; allowed: {', '.join(allowed) or 'none'} "
            "(an operator sets this)")
