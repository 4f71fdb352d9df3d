"""Ranking: turning scored candidates into the list that is shown."""

from ranking.exploration import EpsilonGreedy, Greedy, PlackettLuce, Policy, Ranking

__all__ = ["Ranking", "Policy", "Greedy", "EpsilonGreedy", "PlackettLuce"]
