"""The power governor: pure policy, no I/O. (VehicleState, Policy, now) -> Decision."""

from agent.governor.decision import Decision, Mode, Reason
from agent.governor.policy import Policy
from agent.governor.rules import decide

__all__ = ["Decision", "Mode", "Policy", "Reason", "decide"]
