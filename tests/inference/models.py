"""Single-op int8 model factories for the tests (they live in agent.inference.builder)."""

from agent.inference.builder import conv2d, fully_connected, single_op

__all__ = ["conv2d", "fully_connected", "single_op"]
