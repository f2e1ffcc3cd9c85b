"""What the command-line scripts share: one error line and its exit status, how a written
model file is announced, and where its reports go."""

from __future__ import annotations

import sys
from pathlib import Path

from tabserve.model.trust import key_id


def refuse(message: str) -> int:
    """One line on stderr; the exit status of a command that could not do its work."""
    print(f"error: {message}", file=sys.stderr)
    return 1


def cannot_write(err: OSError, path: Path) -> int:
    return refuse(f"cannot write {err.filename or path}: {err.strerror}")


def signed_with(key: bytes | None) -> str:
    """The words a written model's line ends with when it is signed."""
    return f", signed with key {key_id(key)}" if key else ""


def reports_folder(output: Path) -> Path:
    """Reports go beside the model they describe, so training another model never overwrites
    the default model's committed `reports/`."""
    if output.name == "model.bin":
        return output.parent / "reports"
    return output.with_name(f"{output.stem}.reports")
