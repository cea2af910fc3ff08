"""Job specification and state machine."""

from computegrid.core.jobs.admission import class_problem, deadline_problem
from computegrid.core.jobs.spec import (
    PRIORITY_CLASSES,
    JobSpec,
    Resources,
    Routing,
    SpecError,
    SpecProblem,
    parse_job_spec,
)
from computegrid.core.jobs.states import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    InvalidTransition,
    JobState,
    Transition,
    can_transition,
    transition,
)

__all__ = [
    "ACTIVE_STATES",
    "PRIORITY_CLASSES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "InvalidTransition",
    "JobSpec",
    "JobState",
    "Resources",
    "Routing",
    "SpecError",
    "SpecProblem",
    "Transition",
    "can_transition",
    "class_problem",
    "deadline_problem",
    "parse_job_spec",
    "transition",
]
