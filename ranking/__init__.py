"""Ranking: turning scored candidates into the list that is shown.

Submodules load on first use (`ranking.model` pulls in torch; the re-ranker and the exploration
policies don't need it), so `import ranking.rerank` stays light.
"""

import importlib

_EXPORTS = {
    "Ranking": "exploration", "Policy": "exploration", "Greedy": "exploration", "EpsilonGreedy": "exploration",
    "PlackettLuce": "exploration",
    "TaskSpec": "model", "RankerConfig": "model", "MultiTaskRanker": "model", "masked_loss": "model", "fit": "model",
    "predict": "model", "gradient_x_input": "model",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"ranking.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'ranking' has no attribute {name!r}")
