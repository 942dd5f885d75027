"""The generated parts of docs/operations.md: the config keys and the metrics, from the code.

`python -m agent.deploy.reference docs/operations.md` rewrites each block between
`<!-- generated: NAME -->` and `<!-- end: NAME -->`; a test checks the file is up to date.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path


def _blocks() -> dict[str, Callable[[], str]]:
    from agent import config, metrics

    return {"config": config.reference_markdown, "metrics": metrics.reference_markdown}


def render(text: str) -> str:
    """`text` with every generated block replaced by what the code says now."""
    for name, make in _blocks().items():
        pattern = re.compile(rf"(<!-- generated: {name} -->\n).*?(<!-- end: {name} -->)", re.DOTALL)
        if not pattern.search(text):
            raise ValueError(f"no '<!-- generated: {name} -->' ... '<!-- end: {name} -->' block")
        body = make()
        text = pattern.sub(lambda m: str(m.group(1)) + body + str(m.group(2)), text)  # noqa: B023 -- used at once
    return text


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m agent.deploy.reference docs/operations.md", file=sys.stderr)
        return 2
    path = Path(args[0])
    path.write_text(render(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
