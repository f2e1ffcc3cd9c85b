"""Spark's door: score a DataFrame with a bundle where it lives, or train a bundle on all of it.

    from tabserve.spark import predict, train
    bundle = train(customers, target="churn", output="model.bin")
    scored = predict(customers, "model.bin")

Scoring is the batch wing's (`batch.spark`), training the training wing's (`training.on_spark`);
docs/batch.md and docs/training.md say more.
"""

from tabserve.batch.spark import SparkSetupError, predict
from tabserve.training.on_spark import train

__all__ = ["SparkSetupError", "predict", "train"]
