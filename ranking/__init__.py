"""Ranking: turning scored candidates into the list that is shown."""

from ranking.exploration import EpsilonGreedy, Greedy, PlackettLuce, Policy, Ranking
from ranking.model import (
    MultiTaskRanker,
    RankerConfig,
    TaskSpec,
    fit,
    gradient_x_input,
    masked_loss,
    predict,
)

__all__ = [
    "Ranking", "Policy", "Greedy", "EpsilonGreedy", "PlackettLuce",
    "TaskSpec", "RankerConfig", "MultiTaskRanker", "masked_loss", "fit", "predict",
    "gradient_x_input",
]
