"""What an answer holds, read from a bundle without compiling its model: the serving core's
`Scored` carries it, every codec reads it, and a process that only plans its output (score.py's
parent, Spark's driver) needs nothing heavier. Imports nothing beyond the standard library."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tabserve.model.bundle import ModelBundle

# the keys every answer has; a target named like one of them gets no keys of its own
ANSWER_KEYS = ("label", "probabilities", "model_version", "warnings")


@dataclass(frozen=True)
class AnswerShape:
    """What an answer holds, read from the bundle alone (no scorer is compiled): the classes
    in order, the label rule, the model version, and whether a binary model's answer also
    carries `<target>_probability` and `<target>`, as the course's clients expect."""

    classes: tuple[str, ...]
    target: str
    threshold: float | None
    version: str
    target_keys: bool

    @classmethod
    def of(cls, bundle: ModelBundle) -> AnswerShape:
        target = bundle.schema.target
        target_keys = (bundle.task == "binary" and target not in ANSWER_KEYS
                       and f"{target}_probability" not in ANSWER_KEYS)
        # a bundle still in training (its report explains it) has no version yet
        version = bundle.metadata.get("model_version", "")
        return cls(tuple(bundle.classes), target, bundle.threshold, version, target_keys)

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2

    @property
    def target_probability(self) -> str:
        """The key of the positive class's probability in a binary model's answer."""
        return f"{self.target}_probability"
