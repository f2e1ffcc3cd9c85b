"""Write pyproject.toml from Pipfile.lock: every package pipenv installs, pinned to the same
version, so `uv sync --locked` installs what `make install` does. Run `make uv-lock` after
`pipenv lock` (it runs this, then `uv lock`); tests/test_architecture.py holds the two equal.

    python scripts/uv_pins.py [PIPFILE_LOCK] [PYPROJECT]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Pipfile.lock's categories as pyproject.toml holds them: the project's dependencies are the
# runtime packages (what the image installs), the rest are groups; `uv sync` installs the
# tools group by default, so it installs what `make run` does
GROUPS = {"tools": "tools", "dev": "develop", "lambda": "lambda", "onnx": "onnx"}
PROJECT = ("default",)

HEAD = '''# Written by scripts/uv_pins.py from Pipfile.lock (`make uv-lock`): do not edit by hand.
# pipenv (`make install`, the README's way) and uv (`uv sync --locked`) install the same
# versions; docs/development.md says how to use either.
[project]
name = "tabserve"
version = "0"
description = "A tabular classifier from a CSV to a fast, well-behaved JSON API"
requires-python = "==3.11.*"
'''
TAIL = '''
[tool.uv]
package = false        # an application: nothing to build or install of its own
default-groups = ["tools"]  # `uv sync` installs what `make run` does; `--group dev` adds the
#                             tests'; the image exports the project's alone (Dockerfile)
'''


def requirement(name: str, entry: dict) -> str:
    """One pin, with its extras and any platform marker (pipenv's Python markers say only
    which Pythons the package supports: this project runs on 3.11)."""
    extras = f"[{','.join(sorted(entry['extras']))}]" if entry.get("extras") else ""
    marker = entry.get("markers", "")
    platform = f"; {marker}" if "platform" in marker else ""
    return f"{name}{extras}{entry['version']}{platform}"


def pins(lock: dict, categories: tuple[str, ...]) -> list[str]:
    entries: dict[str, dict] = {}
    for category in categories:
        for name, entry in lock.get(category, {}).items():
            entries.setdefault(name, entry)
    return [requirement(name, entries[name]) for name in sorted(entries)]


def listed(items: list[str], indent: str = "    ") -> str:
    return "[\n" + "".join(f'{indent}"{item}",\n' for item in items) + "]"


def pyproject(lock: dict) -> str:
    project = pins(lock, PROJECT)
    groups = "".join(f"{group} = {listed(pins(lock, (category,)))}\n"
                     for group, category in GROUPS.items())
    return (HEAD + f"dependencies = {listed(project)}\n\n[dependency-groups]\n" + groups + TAIL)


def main() -> int:
    lock_path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "Pipfile.lock"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "pyproject.toml"
    out.write_text(pyproject(json.loads(lock_path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
