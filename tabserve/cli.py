"""What the command-line scripts share: one error line and its exit status, how a written
model file is announced, and where its reports go."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tabserve.model.trust import key_id


def refuse(message: str) -> int:
    """One line on stderr; the exit status of a command that could not do its work."""
    print(f"error: {message}", file=sys.stderr)
    return 1


def cannot_write(err: OSError, path: Path) -> int:
    return refuse(f"cannot write {err.filename or path}: {err.strerror}")


def replaced(*paths: Path) -> str | None:
    """The line to say when a command is about to write over a model or reports that are there
    (`--output model.bin` replaces the committed default model and its `reports/`); None when
    it writes new files. Called before writing."""
    there = [path for path in paths if path.exists()]
    if not there:
        return None
    said = f"Replaced the existing {' and '.join(map(str, there))}"
    committed = [str(path) for path in there if _committed(path)]
    if committed:
        said += f" (they come back with: git checkout -- {' '.join(committed)})"
    return said


def _committed(path: Path) -> bool:
    """Whether git tracks the file (or a file under the folder) at `path`; False without git."""
    try:
        done = subprocess.run(["git", "ls-files", "--error-unmatch", "--", path.name],
                              cwd=path.resolve().parent, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def signed_with(key: bytes | None) -> str:
    """The words a written model's line ends with when it is signed."""
    return f", signed with key {key_id(key)}" if key else ""


def reports_folder(output: Path) -> Path:
    """Reports go beside the model they describe, so training another model never overwrites
    the default model's committed `reports/`."""
    if output.name == "model.bin":
        return output.parent / "reports"
    return output.with_name(f"{output.stem}.reports")
