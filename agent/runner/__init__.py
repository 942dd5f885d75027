"""The job runner: queue, power budget -> cores and duty cycle, preemption via cancel tokens."""

from agent.runner.power import Allocation, PowerModel, PowerModelError
from agent.runner.runner import Job, JobOutcome, Outcome, Runner, RunnerError, RunnerStats
from agent.runner.token import Cancelled, CancelToken, EventToken

__all__ = [
    "Allocation", "CancelToken", "Cancelled", "EventToken", "Job", "JobOutcome", "Outcome",
    "PowerModel", "PowerModelError", "Runner", "RunnerError", "RunnerStats",
]
