"""What an answer holds, read from a bundle without compiling its model: the serving core's
`Scored` carries it, every codec reads it, and a process that only plans its output (score.py's
parent, Spark's driver) needs nothing heavier. Imports nothing beyond the standard library."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tabserve.model.bundle import ModelBundle

# the keys every answer has; a target named like one of them gets no keys of its own
ANSWER_KEYS = ("label", "probabilities", "model_version", "warnings")
_SEPARATORS = re.compile(r"[\s\-]+")


def answer_key(target: str) -> str:
    """The target's key in an answer, spelt as the course's clients read it: lower case, spaces
    and `-` as `_` ("Churn" and "churn" both answer `churn`, "Churn Label" `churn_label`)."""
    return _SEPARATORS.sub("_", target.strip()).lower()


@dataclass(frozen=True)
class AnswerShape:
    """What an answer holds, read from the bundle alone (no scorer is compiled): the classes
    in order, the label rule, the model version, and whether a binary model's answer also
    carries `<key>_probability` and `<key>`, as the course's clients expect (`key`: the
    target's name as `answer_key` spells it)."""

    classes: tuple[str, ...]
    key: str
    threshold: float | None
    version: str
    target_keys: bool

    @classmethod
    def of(cls, bundle: ModelBundle) -> AnswerShape:
        key = answer_key(bundle.schema.target)
        target_keys = (bundle.task == "binary" and key not in ANSWER_KEYS
                       and f"{key}_probability" not in ANSWER_KEYS)
        # a bundle still in training (its report explains it) has no version yet
        version = bundle.metadata.get("model_version", "")
        return cls(tuple(bundle.classes), key, bundle.threshold, version, target_keys)

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2

    @property
    def target_probability(self) -> str:
        """The key of the positive class's probability in a binary model's answer."""
        return f"{self.key}_probability"
