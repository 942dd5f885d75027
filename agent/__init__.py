"""fleetnode: the on-car agent that lends a parked electric car's inference computer to a fleet."""

__version__ = "0.1.0"
