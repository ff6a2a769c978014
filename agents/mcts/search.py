"""Monte Carlo tree search over the SID tree of each request, with the simulator as the model (UniVA 3.3).

One search tree per request, all stored as arrays indexed by trie node (``SidTrie.levels[d]`` numbers the nodes
at depth d), so a batch of requests is searched together: every simulation descends all trees at once, and the
leaves they reach are scored in one ``Simulator.evaluate`` call.

Selection, per visited node n with legal children a:

* UCT (UniVA eq. 15), when no ``PriorValueFn`` is given: ``Q(n, a) + c * sqrt(log N(n) / (1 + N(n, a)))``.
  Unvisited children are tried first (``unvisited="first"``) or valued at their parent's mean (``"fpu"``).
* PUCT (MCTS-PPO with policy priors P and value guidance V): ``Q(n, a) + c * P(a | n) * sqrt(N(n)) / (1 + N(n, a))``;
  a newly reached internal node is valued by the value head instead of a random rollout.

Q is the running mean of backed-up values, min-max normalised per request (as in MuZero), so ``c`` does not
depend on the reward scale. Each simulation adds one node: it descends through visited nodes, and at the first
unvisited one evaluates either a uniform random legal rollout to a full path (the simulator scores it) or the
PriorValueFn. Full paths, once scored, are cached: the simulator is deterministic, so a path is paid for once.

Values are in reward units, ``final_value x value_scale`` (pass the env's reward scale to match a value head).
With ``leaf="value"`` the PriorValueFn values full paths too, so a search calls no simulator at all: UniVA's
MCTS-PPO inside a post-training budget, where only the candidates it returns are scored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

import numpy as np

from adsim.simulator.requests import RequestBatch, take
from adsim.simulator.simulator import RewardSource, Simulator
from agents.mcts.paths import RequestTries, sample_masked


class PriorValueFn(Protocol):
    """A policy's view of the search (MCTS-PPO): priors over the next code and a value for SID prefixes."""

    def __call__(self, requests: RequestBatch, prefixes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``prefixes`` (B, L) int64, -1 on the open levels. Returns ``priors`` (B, W), any non-negative weights
        over the next level's codes (the search keeps the legal ones and renormalises; ignored for full paths,
        which are passed only with ``leaf="value"``), and ``values`` (B,), the expected return from that prefix
        in reward units."""
        ...


@dataclass(frozen=True)
class MCTSConfig:
    num_simulations: int = 64
    """Simulations per request (one tree node added, at most one path scored, per simulation)."""
    exploration: float = 1.0
    """c in the UCT / PUCT rule, on min-max normalised values."""
    rule: Literal["auto", "uct", "puct"] = "auto"
    """"auto": PUCT when a PriorValueFn is given, else UCT. PUCT without one uses uniform priors."""
    unvisited: Literal["first", "fpu"] = "first"
    """UCT only: try every legal child once before revisiting ("first"), or value unvisited children at their
    parent's mean ("fpu", first-play urgency; PUCT always does this)."""
    backup: Literal["mean", "max"] = "mean"
    """Q of an edge: the running mean of the values backed up through it (eq. 15), or their maximum (suits a
    deterministic search for the single best path)."""
    final: Literal["best", "visits"] = "best"
    """Which path ``act`` returns: the best scored path seen ("best", right for a deterministic simulator) or the
    most visited child at every level ("visits", AlphaZero's choice)."""
    rollout_weight: float = 0.0
    """With a PriorValueFn: weight of a random rollout mixed into the value of a new node (0: value head only)."""
    dirichlet_alpha: float = 0.0
    """Dirichlet noise on the root priors (PUCT), for exploration when collecting training trajectories; 0: off."""
    dirichlet_frac: float = 0.25
    top_k: int = 8
    """Best distinct scored paths kept per request (UniVA eq. 14's candidate set for training)."""
    batch_size: int = 256
    """Requests searched together; memory is about batch_size x trie nodes x 20 bytes."""
    reward: Literal["final_value", "ecpm"] = "final_value"
    reward_source: RewardSource = "model"
    leaf: Literal["simulator", "value"] = "simulator"
    """How a full path is valued: scored by the simulator, or by the PriorValueFn (no simulator call; needs one,
    and ``ad_id`` comes back -1 since no ad was resolved)."""
    seed: int = 0


class SearchResult(NamedTuple):
    """What a search of B requests returns. Values are in reward units (final_value x value_scale)."""

    path: np.ndarray  # (B, L) chosen path, -1 for a request without any eligible ad
    value: np.ndarray  # (B,) its value
    ad_id: np.ndarray  # (B,) the ad it resolves to, -1 if none
    policy: np.ndarray  # (B, L, W) visit-count distribution at each node on the chosen path (0 if never expanded)
    q: np.ndarray  # (B, L) running mean value of each chosen edge (nan if never visited)
    root_value: np.ndarray  # (B,) running mean value at the root
    paths: np.ndarray  # (B, K, L) best distinct scored paths, -1 padded
    path_values: np.ndarray  # (B, K) their values, nan padded
    n_scored: np.ndarray  # (B,) distinct full paths the simulator scored for each request
    seconds: float

    def normalised_path_rewards(self, eps: float = 1e-6) -> np.ndarray:
        """(B, K) UniVA eq. 17: each request's candidate values z-scored within the request (nan padded)."""
        mean = np.nanmean(self.path_values, axis=1, keepdims=True)
        std = np.nanstd(self.path_values, axis=1, keepdims=True)
        return (self.path_values - mean) / (std + eps)


def candidate_trajectories(result: SearchResult, tries: RequestTries) -> dict[str, np.ndarray]:
    """MCTS-PPO training data (UniVA eq. 14-17): each request's best scored paths as token-level trajectories.

    Returns N = (valid candidates) rows: ``request`` (N,) row of ``tries``, ``path`` (N, L), ``mask`` (N, L, W)
    the legal codes at every level (what the policy chose among), ``value`` (N,) the path's value and ``reward``
    (N,) that value z-scored within its request (eq. 17), the terminal reward for PPO-style GAE.
    """
    valid = result.paths[..., 0] >= 0  # (B, K)
    request, slot = np.nonzero(valid)
    path = result.paths[request, slot]
    sub = tries.take(request)
    mask = np.stack([sub.legal_mask(path[:, :d]) for d in range(tries.depth)], axis=1)
    return {"request": request, "path": path, "mask": mask, "value": result.path_values[request, slot],
            "reward": result.normalised_path_rewards()[request, slot]}


class _Trees:
    """Visit counts, value sums and priors of B search trees, one array per trie depth, (B, n_nodes[d])."""

    def __init__(self, tries: RequestTries):
        trie = tries.trie
        self.sizes = [len(level.start) for level in trie.levels]
        b = len(tries)
        self.n = [np.zeros((b, s), dtype=np.int32) for s in self.sizes]
        self.w = [np.zeros((b, s)) for s in self.sizes]
        self.best = [np.full((b, s), -np.inf) for s in self.sizes]
        self.prior = [np.zeros((b, s)) for s in self.sizes]
        self.done = [np.zeros((b, s), dtype=bool) for s in self.sizes]
        """Exhausted nodes: scored full paths, and nodes whose legal children are all exhausted. Nothing is left
        to learn below them (the simulator is deterministic), so selection skips them while it can."""
        self.legal = [tries.node_allowed(d) for d in range(trie.depth + 1)]
        self.leaf_value = np.full((b, self.sizes[-1]), np.nan)
        self.leaf_ad = np.full((b, self.sizes[-1]), -1, dtype=np.int64)
        self.lo = np.full(b, np.inf)
        self.hi = np.full(b, -np.inf)

    def normalise(self, rows: np.ndarray, q: np.ndarray) -> np.ndarray:
        lo, hi = self.lo[rows], self.hi[rows]
        base = np.where(np.isfinite(lo), lo, 0.0)
        span = np.where(hi > lo, hi - lo, 1.0)
        shape = (-1,) + (1,) * (q.ndim - 1)
        return (q - base.reshape(shape)) / span.reshape(shape)


class MCTS:
    """Batched MCTS over SID trees. ``act`` is the policy; ``search`` also returns MCTS-PPO training data."""

    def __init__(self, simulator: Simulator, config: MCTSConfig | None = None,
                 prior_value: PriorValueFn | None = None, value_scale: float = 1.0):
        self.sim, self.trie = simulator, simulator.trie
        self.config = config or MCTSConfig()
        self.prior_value = prior_value
        self.value_scale = value_scale
        rule = self.config.rule
        self.puct = rule == "puct" or (rule == "auto" and prior_value is not None)
        if rule not in ("auto", "uct", "puct"):
            raise ValueError(f"rule must be 'auto', 'uct' or 'puct', got {rule!r}")
        if self.config.leaf not in ("simulator", "value"):
            raise ValueError(f"leaf must be 'simulator' or 'value', got {self.config.leaf!r}")
        if self.config.leaf == "value" and prior_value is None:
            raise ValueError("leaf='value' values full paths with the PriorValueFn: pass prior_value")
        if self.config.num_simulations < 1:
            raise ValueError(f"num_simulations must be >= 1, got {self.config.num_simulations}")
        self.rng = np.random.default_rng(self.config.seed)

    # ------------------------------------------------------------------------------------------ public
    def act(self, requests: RequestBatch, allowed: np.ndarray | None = None) -> np.ndarray:
        """(B, L) SID paths for B requests."""
        return self.search(requests, allowed).path

    def search(self, requests: RequestBatch, allowed: np.ndarray | None = None) -> SearchResult:
        """Search every request's tree with ``num_simulations`` simulations (in chunks of ``batch_size``)."""
        started = time.perf_counter()
        tries = RequestTries(self.sim, requests, allowed)
        chunks = [self._search_chunk(tries.take(np.arange(lo, min(lo + self.config.batch_size, len(tries)))))
                  for lo in range(0, len(tries), self.config.batch_size)]
        fields = {name: np.concatenate([c[name] for c in chunks]) if chunks else np.empty(0)
                  for name in SearchResult._fields if name != "seconds"}
        return SearchResult(**fields, seconds=time.perf_counter() - started)

    # ------------------------------------------------------------------------------------------ search
    def _search_chunk(self, tries: RequestTries) -> dict[str, np.ndarray]:
        trees = _Trees(tries)
        for _ in range(self.config.num_simulations):
            if not (trees.legal[0][:, 0] & ~trees.done[0][:, 0]).any():
                break  # every tree fully enumerated: the best path of each request is known
            self._simulate(tries, trees)
        return self._extract(tries, trees)

    def _node_prefixes(self, depth: int, nodes: np.ndarray) -> np.ndarray:
        """(n, L) code prefixes of trie nodes at ``depth``, -1 on the open levels."""
        out = np.full((len(nodes), self.trie.depth), -1, dtype=np.int64)
        out[:, :depth] = self.trie.sorted_codes[self.trie.levels[depth].start[nodes], :depth]
        return out

    def _children(self, trees: _Trees, depth: int, rows: np.ndarray, nodes: np.ndarray):
        """Children (n, W) of ``nodes`` at ``depth`` (clipped to >= 0) and which are legal for their request."""
        kids = self.trie.child[depth][nodes]
        k = np.maximum(kids, 0)
        return k, (kids >= 0) & trees.legal[depth + 1][rows[:, None], k]

    def _select(self, trees: _Trees, depth: int, rows: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        """The child each visited node descends to (UCT or PUCT)."""
        cfg = self.config
        kids, ok = self._children(trees, depth, rows, nodes)
        n = trees.n[depth + 1][rows[:, None], kids].astype(np.float64)  # (G, W)
        parent_n = trees.n[depth][rows, nodes].astype(np.float64)  # (G,)
        if cfg.backup == "max":
            q_child, q_parent = trees.best[depth + 1][rows[:, None], kids], trees.best[depth][rows, nodes]
        else:
            q_child = trees.w[depth + 1][rows[:, None], kids] / np.maximum(n, 1)
            q_parent = trees.w[depth][rows, nodes] / parent_n
        parent_q = trees.normalise(rows, q_parent)
        q = np.where(n > 0, trees.normalise(rows, np.where(n > 0, q_child, 0.0)), parent_q[:, None])
        if self.puct:
            prior = trees.prior[depth + 1][rows[:, None], kids]
            score = q + cfg.exploration * prior * np.sqrt(parent_n)[:, None] / (1 + n)
        else:
            score = q + cfg.exploration * np.sqrt(np.log(parent_n)[:, None] / (1 + n))
            if cfg.unvisited == "first":
                score = np.where(n == 0, 1e9, score)
        open_ = ok & ~trees.done[depth + 1][rows[:, None], kids]
        ok = np.where(open_.any(axis=1, keepdims=True), open_, ok)  # all exhausted: any legal child (cached)
        score = np.where(ok, score + 1e-9 * self.rng.random(score.shape), -np.inf)  # random tie-breaking
        return kids[np.arange(len(rows)), score.argmax(axis=1)]

    def _rollout(self, trees: _Trees, depth: int, rows: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        """Leaf nodes reached from ``nodes`` at ``depth`` by uniform random legal codes."""
        for d in range(depth, self.trie.depth):
            kids, ok = self._children(trees, d, rows, nodes)
            nodes = kids[np.arange(len(rows)), np.maximum(sample_masked(ok.astype(np.float64), self.rng), 0)]
        return nodes

    def _expand(self, tries: RequestTries, trees: _Trees, depth: int, rows: np.ndarray, nodes: np.ndarray
                ) -> np.ndarray:
        """PUCT expansion of new internal nodes: store their children's priors (the PriorValueFn's, else uniform)
        and return the PriorValueFn's values of the nodes (zeros without one)."""
        cfg = self.config
        kids, ok = self._children(trees, depth, rows, nodes)
        if self.prior_value is None:
            priors, values = np.ones(ok.shape), np.zeros(len(rows))
        else:
            priors, values = self.prior_value(take(tries.requests, rows), self._node_prefixes(depth, nodes))
        p = np.where(ok, np.clip(np.asarray(priors, dtype=np.float64), 0, None), 0.0)
        total = p.sum(axis=1, keepdims=True)
        p = np.where(total > 0, p / np.where(total > 0, total, 1), ok / np.maximum(ok.sum(1, keepdims=True), 1))
        if depth == 0 and cfg.dirichlet_alpha > 0:
            noise = self.rng.gamma(cfg.dirichlet_alpha, size=p.shape) * ok
            noise /= np.maximum(noise.sum(axis=1, keepdims=True), 1e-12)
            p = (1 - cfg.dirichlet_frac) * p + cfg.dirichlet_frac * noise
        r, c = np.nonzero(ok)  # only legal children: illegal entries alias child 0 (clipped -1)
        trees.prior[depth + 1][rows[r], kids[r, c]] = p[r, c]
        return np.asarray(values, dtype=np.float64).reshape(len(rows))

    def _score_leaves(self, tries: RequestTries, trees: _Trees, rows: np.ndarray, leaves: np.ndarray) -> np.ndarray:
        """Values of full paths (leaf nodes), from the cache or one simulator call for the new ones."""
        value = trees.leaf_value[rows, leaves]
        new = np.flatnonzero(np.isnan(value))
        if len(new):
            r, leaf = rows[new], leaves[new]
            paths = self._node_prefixes(self.trie.depth, leaf)
            if self.config.leaf == "value":
                value[new] = np.asarray(self.prior_value(take(tries.requests, r), paths)[1], dtype=np.float64)
            else:
                ev = self.sim.evaluate(take(tries.requests, r), paths[:, None, :], self.config.reward_source,
                                       allowed=tries.allowed[r])
                value[new] = getattr(ev, self.config.reward)[:, 0] * self.value_scale
                trees.leaf_ad[r, leaf] = ev.ad_id[:, 0]
            trees.leaf_value[r, leaf] = value[new]
            trees.done[-1][r, leaf] = True
        return value

    def _simulate(self, tries: RequestTries, trees: _Trees) -> None:
        depth_max = self.trie.depth
        b = len(tries)
        # selection: descend through visited nodes
        path = np.zeros((b, depth_max + 1), dtype=np.int64)
        stop = np.full(b, depth_max)
        active = trees.legal[0][:, 0] & ~trees.done[0][:, 0]
        stop[~active] = -1
        for d in range(depth_max):
            at = np.flatnonzero(active)
            visited = trees.n[d][at, path[at, d]] > 0
            stop[at[~visited]] = d
            active[at[~visited]] = False
            go = at[visited]
            if len(go):
                path[go, d + 1] = self._select(trees, d, go, path[go, d])
        # evaluation: full paths are scored; a new internal node gets a rollout and/or the PriorValueFn's value
        value = np.zeros(b)
        leaf_rows = np.flatnonzero(stop == depth_max)
        new_rows = np.flatnonzero((stop >= 0) & (stop < depth_max))
        w_roll = 1.0 if self.prior_value is None else self.config.rollout_weight
        scored_rows, scored_leaves, weights = [leaf_rows], [path[leaf_rows, depth_max]], [np.ones(len(leaf_rows))]
        for d in np.unique(stop[new_rows]):
            rows = new_rows[stop[new_rows] == d]
            if self.puct:
                value[rows] = (1 - w_roll) * self._expand(tries, trees, d, rows, path[rows, d])
            if w_roll > 0:
                scored_rows.append(rows)
                scored_leaves.append(self._rollout(trees, d, rows, path[rows, d]))
                weights.append(np.full(len(rows), w_roll))
        rows, leaves = np.concatenate(scored_rows), np.concatenate(scored_leaves)
        if len(rows):
            value[rows] += np.concatenate(weights) * self._score_leaves(tries, trees, rows, leaves)
        # backup along the selected path, down to the node where the simulation stopped
        done = np.flatnonzero(stop >= 0)
        for d in range(depth_max + 1):
            rows = done[stop[done] >= d]
            trees.n[d][rows, path[rows, d]] += 1  # one node per row: no repeated indices
            trees.w[d][rows, path[rows, d]] += value[rows]
            trees.best[d][rows, path[rows, d]] = np.maximum(trees.best[d][rows, path[rows, d]], value[rows])
        for d in range(depth_max - 1, -1, -1):  # exhaustion climbs the selected path
            rows = done[stop[done] >= d]
            kids, ok = self._children(trees, d, rows, path[rows, d])
            trees.done[d][rows, path[rows, d]] = (~ok | trees.done[d + 1][rows[:, None], kids]).all(axis=1)
        trees.lo[done] = np.minimum(trees.lo[done], value[done])
        trees.hi[done] = np.maximum(trees.hi[done], value[done])

    # ------------------------------------------------------------------------------------------ results
    def _extract(self, tries: RequestTries, trees: _Trees) -> dict[str, np.ndarray]:
        depth, width, b = self.trie.depth, self.trie.width, len(tries)
        rows = np.arange(b)
        searched = trees.legal[0][:, 0]
        scored = np.where(np.isnan(trees.leaf_value), -np.inf, trees.leaf_value)
        leaf = scored.argmax(axis=1)
        descend = rows[searched] if self.config.final == "visits" else rows[searched & ~np.isfinite(scored.max(1))]
        leaf[descend] = self._most_visited_leaves(trees, scored, descend)
        unscored = rows[searched & np.isnan(trees.leaf_value[rows, leaf])]
        if len(unscored):  # a path chosen without being scored (PUCT guided by the value head): score it now
            self._score_leaves(tries, trees, unscored, leaf[unscored])
            scored = np.where(np.isnan(trees.leaf_value), -np.inf, trees.leaf_value)
        has = searched & np.isfinite(scored[rows, leaf])
        path = np.where(has[:, None], self._node_prefixes(depth, leaf), -1)

        policy = np.zeros((b, depth, width))
        q = np.full((b, depth), np.nan)
        for d in range(depth):
            parent = self.trie.walk(path[:, :d])
            kids, ok = self._children(trees, d, rows, np.maximum(parent, 0))
            counts = np.where(ok, trees.n[d + 1][rows[:, None], kids], 0).astype(np.float64)
            policy[:, d] = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
            child = self.trie.walk(path[:, : d + 1])
            n = trees.n[d + 1][rows, np.maximum(child, 0)]
            q[:, d] = np.where(has & (n > 0), trees.w[d + 1][rows, np.maximum(child, 0)] / np.maximum(n, 1), np.nan)

        k = min(self.config.top_k, scored.shape[1])
        top = np.argsort(-scored, axis=1, kind="stable")[:, :k]
        top_values = np.take_along_axis(scored, top, axis=1)
        top_paths = self._node_prefixes(depth, top.ravel()).reshape(b, k, depth)
        top_ok = np.isfinite(top_values)
        root_n = trees.n[0][:, 0]
        return {
            "path": path,
            "value": np.where(has, scored[rows, leaf], 0.0),
            "ad_id": np.where(has, trees.leaf_ad[rows, leaf], -1),
            "policy": policy,
            "q": q,
            "root_value": np.where(root_n > 0, trees.w[0][:, 0] / np.maximum(root_n, 1), np.nan),
            "paths": np.where(top_ok[..., None], top_paths, -1),
            "path_values": np.where(top_ok, top_values, np.nan),
            "n_scored": np.isfinite(scored).sum(axis=1),
        }

    def _most_visited_leaves(self, trees: _Trees, scored: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Leaves reached by descending through the most visited children (ties: higher mean value). Below the
        visited tree: the highest prior (PUCT), else the best scored leaf underneath (a rollout's), else any
        legal child."""
        leaf_start = self.trie.levels[-1].start
        out = np.zeros(len(rows), dtype=np.int64)
        for i, r in enumerate(rows):
            node, d = 0, 0
            while d < self.trie.depth:
                kids, ok = self._children(trees, d, np.array([r]), np.array([node]))
                kids, ok = kids[0], ok[0]
                visits = np.where(ok, trees.n[d + 1][r, kids], 0)
                if visits.max(initial=0) > 0:
                    mean = trees.w[d + 1][r, kids] / np.maximum(visits, 1)
                    node = int(kids[np.lexsort((-mean, -visits))[0]])
                elif self.puct:
                    node = int(kids[np.where(ok, trees.prior[d + 1][r, kids], -1.0).argmax()])
                else:
                    level = self.trie.levels[d]
                    lo, hi = np.searchsorted(leaf_start, [level.start[node], level.end[node]])
                    if hi > lo and np.isfinite(scored[r, lo:hi]).any():
                        node, d = lo + int(scored[r, lo:hi].argmax()), self.trie.depth
                        break
                    node = int(kids[ok.argmax()])
                d += 1
            out[i] = node
        return out
