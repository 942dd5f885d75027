"""Shared fixtures live in tests/fixtures/; each module there is a pytest plugin."""

pytest_plugins = [
    "tests.fixtures.pty",
    "tests.fixtures.broker",
    "tests.fixtures.smallfs",
    "tests.fixtures.figures",
]
