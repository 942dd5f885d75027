"""The governor's rules. Every rule that says no adds a Reason; RUN needs no reason against."""

from __future__ import annotations

from agent.bus.state import VehicleState
from agent.governor.decision import Decision, Mode, Reason
from agent.governor.policy import Policy


def decide(state: VehicleState, policy: Policy, now: float) -> Decision:
    """Decide what compute may do now. `now` is monotonic seconds, as the state's timestamps."""
    if not state.link.up:
        return Decision(Mode.OFF, 0.0, (Reason("link_down", f"vehicle link down: {state.link.reason}"),))

    reasons: list[Reason] = []
    age = policy.max_input_age_s

    def need(role: str) -> object:
        v = state.value(role, now, age)
        if v is None:
            reasons.append(Reason("stale_input", f"{role} is unknown or older than {age:g} s"))
        return v

    gear = need("gear")
    speed = need("speed_kph")
    driver = need("driver_present")
    soc = need("soc_percent")
    charging_kw = need("charging_power_kw")
    if gear is not None and gear != "P":
        reasons.append(Reason("not_parked", f"gear is {gear}, not P"))
    if speed is not None and float(speed) != 0.0:  # type: ignore[arg-type]
        reasons.append(Reason("moving", f"vehicle moving at {speed} km/h"))
    if driver is True:
        reasons.append(Reason("driver_present", "a driver is present"))
    if not policy.consent:
        reasons.append(Reason("no_consent", "the owner has not consented"))
    if policy.require_charging and charging_kw is not None and float(charging_kw) <= 0.0:  # type: ignore[arg-type]
        reasons.append(Reason("not_charging", "the car is not charging"))
    if soc is not None and float(soc) < policy.soc_floor_percent:  # type: ignore[arg-type]
        reasons.append(Reason("soc_floor", f"SoC {soc:.0f} % is below the floor {policy.soc_floor_percent:.0f} %"))

    if reasons:
        return Decision(Mode.STANDBY, 0.0, tuple(reasons))
    return Decision(Mode.RUN, policy.max_power_w, ())
