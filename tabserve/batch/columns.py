"""A file's columns against the model's fields, for every door that reads files (score.py,
Spark, monitor.py, POST /score): which fields the file lacks, and what an input column is
called in an output. The schema alone: no pyarrow, which the image leaves out."""

from __future__ import annotations

from tabserve.model.schema import loose_spelling


def kept_name(name: str, answers: list[str]) -> str:
    """An input column's name in the output: its own, unless an answer column has it (the
    target, in a file that holds it), then `<name>_input`."""
    return f"{name}_input" if name in answers else name


def missing_fields(schema, columns: list[str], where) -> str | None:
    """What is wrong when `where` (a file, named) lacks some of the model's fields, each
    named with the column that is only spelled differently, if there is one; None when it
    has them all."""
    missing = [name for name in schema.names if name not in columns]
    if not missing:
        return None
    hints = []
    for name in missing:
        near = [c for c in columns if loose_spelling(c) == loose_spelling(name)]
        hints.append(f"{name!r} (the file has {near[0]!r})" if near else repr(name))
    return f"{where}: the model needs columns the file lacks: {', '.join(hints)}"
