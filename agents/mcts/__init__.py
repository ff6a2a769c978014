"""Monte Carlo tree search over SID trees with the simulator as the model (UniVA's MCTS-PPO), and the scoring of
any policy on held-out requests. Numpy only; the Tune trainable lives in ``agents.rllib.mcts_trainable`` (Ray)."""

from agents.mcts.evaluation import Evaluator, greedy_ecpm_ads, held_out_requests, logged_ads, normalised_score
from agents.mcts.paths import RequestTries, decode, observations, random_legal_paths
from agents.mcts.search import MCTS, MCTSConfig, PriorValueFn, SearchResult, candidate_trajectories

__all__ = [
    "MCTS",
    "Evaluator",
    "MCTSConfig",
    "PriorValueFn",
    "RequestTries",
    "SearchResult",
    "candidate_trajectories",
    "decode",
    "greedy_ecpm_ads",
    "held_out_requests",
    "logged_ads",
    "normalised_score",
    "observations",
    "random_legal_paths",
]
