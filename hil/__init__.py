"""Hardware-in-the-loop bench: a simulated car that drives the real shim and the real agent."""
