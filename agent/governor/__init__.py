"""The power governor: pure policy, no I/O.

    decide(VehicleState, Policy, now) -> Decision                  stateless, one look
    step(state, policy, now, memory, inputs) -> (Decision, Memory)  with hysteresis and dwell
    Governor(policy).decide(state, now, inputs) -> Decision          step, memory kept for you
"""

from agent.governor.decision import CODES, Decision, Mode, Reason, Severity
from agent.governor.inputs import GridSignal, Inputs
from agent.governor.policy import Policy, PolicyError
from agent.governor.rules import Governor, Memory, decide, step

__all__ = [
    "CODES", "Decision", "Governor", "GridSignal", "Inputs", "Memory", "Mode", "Policy",
    "PolicyError", "Reason", "Severity", "decide", "step",
]
