"""Tests of the native int8 engine (agent/inference + native/), with LiteRT as the oracle."""
