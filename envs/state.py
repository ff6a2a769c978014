"""Checks of a saved env state before ``set_state`` restores it: refused with an ``AdSimStateError`` naming the part
of the state at fault, instead of a raw ``KeyError``/``IndexError`` or an episode that silently ends on no ad.

A state must have the structure ``get_state`` writes (the same keys, array shapes and dtypes as the env it is restored
into) and be consistent by the env's own definition (the numpy reference, ``envs.episodes.EpisodeBatch``): each
episode's request is one of the context's requests (logged, or of the ARR pool), its chosen codes are a legal path
for that request (every code leads to an ad the request may see), its legal mask, eligibility and features are the
ones that request and prefix give, and a finished episode has no legal action left. Nothing is changed when a check
fails. Finished episodes (``done``) are only checked for structure: their arrays are not read again before a reset.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from adsim.errors import AdSimStateError
from adsim.simulator.requests import RequestBatch


def check_rng(bit_generator, rng, key: str = "rng") -> None:
    """``rng`` is a state ``bit_generator`` accepts (tried on a fresh generator of its kind, not on it)."""
    if not isinstance(rng, Mapping) or rng.get("bit_generator") != type(bit_generator).__name__:
        raise AdSimStateError(f"must be a {type(bit_generator).__name__} bit generator state, got "
                              f"{type(rng).__name__}", key=key)
    try:
        type(bit_generator)().state = dict(rng)
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise AdSimStateError(f"not a valid {type(bit_generator).__name__} state: {e}", key=key) from None


def check_mapping(state, expected: Mapping[str, np.ndarray], key: str) -> None:
    """``state`` holds exactly ``expected``'s keys, each an array of the same shape and dtype."""
    if not isinstance(state, Mapping):
        raise AdSimStateError(f"must be a dict (as get_state returns it), got {type(state).__name__}", key=key)
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:
        raise AdSimStateError(f"keys differ from get_state's: missing {missing}, unexpected {extra}", key=key)
    for name, like in expected.items():
        value = state[name]
        if isinstance(like, Mapping):
            check_mapping(value, like, f"{key}.{name}")
            continue
        if not isinstance(value, np.ndarray):
            raise AdSimStateError(f"must be a numpy array, got {type(value).__name__}", key=f"{key}.{name}")
        if value.shape != like.shape or value.dtype != like.dtype:
            raise AdSimStateError(f"must be {like.dtype} of shape {like.shape} (this env's), got {value.dtype} of "
                                  f"shape {value.shape}", key=f"{key}.{name}")


def check_prefix(prefix: np.ndarray, width: int, key: str) -> np.ndarray:
    """Codes in [0, width) then -1 for the open levels; returns the level of each episode."""
    bad = np.flatnonzero(((prefix < -1) | (prefix >= width)).any(axis=1))
    if len(bad):
        raise AdSimStateError(f"episode {bad[0]} has a code outside -1..{width - 1}: {prefix[bad[0]].tolist()}",
                              key=key)
    chosen = prefix >= 0
    level = chosen.sum(axis=1)
    gaps = np.flatnonzero((chosen != (np.arange(prefix.shape[1]) < level[:, None])).any(axis=1))
    if len(gaps):
        raise AdSimStateError(f"episode {gaps[0]} has a code after an open level: {prefix[gaps[0]].tolist()}",
                              key=key)
    return level


def check_requests(ctx, requests: RequestBatch, rows: np.ndarray, key: str) -> None:
    """Each request of ``rows`` is the context's request of its id: logged (id >= 0) or of the ARR pool (id < 0)."""
    ids = np.asarray(requests["request_id"])[rows]
    logged = ctx.requests.logged
    for synthetic, pool in ((False, logged), (True, None)):
        mine = rows[(ids < 0) == synthetic]
        if not len(mine):
            continue
        pool = ctx.requests.synthetic if synthetic else pool
        pool_ids = pool["request_id"]
        wanted = np.asarray(requests["request_id"])[mine]
        order = np.argsort(pool_ids, kind="stable")
        at = order[np.minimum(np.searchsorted(pool_ids[order], wanted), len(order) - 1)] if len(order) else wanted
        found = pool_ids[at] == wanted if len(order) else np.zeros(len(wanted), dtype=bool)
        if not found.all():
            row = mine[np.flatnonzero(~found)[0]]
            raise AdSimStateError(f"episode {row}'s request_id {int(requests['request_id'][row])} is not a "
                                  f"{'ARR' if synthetic else 'logged'} request of this env's split",
                                  key=f"{key}.request_id")
        for column, values in requests.items():
            differs = np.flatnonzero(np.asarray(values)[mine] != pool[column][at])
            if len(differs):
                raise AdSimStateError(f"episode {mine[differs[0]]}'s {column} differs from its request's (request_id "
                                      f"{int(wanted[differs[0]])})", key=f"{key}.{column}")


def check_episodes(ctx, requests: RequestBatch, prefix: np.ndarray, mask: np.ndarray, done: np.ndarray,
                   features: Mapping[str, np.ndarray], key: str, allowed: np.ndarray | None = None,
                   sums: np.ndarray | None = None) -> np.ndarray:
    """The episodes in flight are consistent by the reference definition (see the module docstring); ``allowed``
    and ``sums`` are checked too when the state carries them. Returns each episode's level."""
    sim = ctx.simulator
    trie = sim.trie
    level = check_prefix(prefix, trie.width, f"{key}.prefix")
    over = np.flatnonzero(~done & (level >= trie.depth))
    if len(over):
        raise AdSimStateError(f"episode {over[0]} chose every level but is not done", key=f"{key}.done")
    left = np.flatnonzero(done & mask.any(axis=1))
    if len(left):
        raise AdSimStateError(f"episode {left[0]} is done but still has legal actions", key=f"{key}.mask")
    live = np.flatnonzero(~done)
    if not len(live):
        return level
    check_requests(ctx, requests, live, f"{key}.requests")
    batch = {column: np.asarray(values)[live] for column, values in requests.items()}
    eligible = sim.allowed(batch)
    prefix_sums = trie.allowed_prefix_sums(eligible)
    for name, given, expected in (("allowed", allowed, eligible), ("sums", sums, prefix_sums)):
        if given is not None and not np.array_equal(given[live], expected):
            row = live[np.flatnonzero((given[live] != expected).any(axis=1))[0]]
            raise AdSimStateError(f"episode {row}'s {name} is not its request's eligibility", key=f"{key}.{name}")
    for d in range(int(level[live].max()) + 1):
        at = np.flatnonzero(level[live] >= d)
        legal = trie.legal_mask(prefix[live[at], :d], prefix_sums[at])
        if d < trie.depth:
            chosen = np.flatnonzero(level[live[at]] > d)
            codes = prefix[live[at[chosen]], d]
            illegal = chosen[~legal[chosen, codes]]
            if len(illegal):
                row = live[at[illegal[0]]]
                raise AdSimStateError(f"episode {row}'s code {int(prefix[row, d])} at level {d} leads to no ad its "
                                      f"request may see: not a legal path {prefix[row].tolist()}", key=f"{key}.prefix")
            now = np.flatnonzero(level[live[at]] == d)
            wrong = now[(mask[live[at[now]]] != legal[now]).any(axis=1)]
            if len(wrong):
                raise AdSimStateError(f"episode {live[at[wrong[0]]]}'s legal mask is not its prefix's",
                                      key=f"{key}.mask")
    built = ctx.observations.build(batch)
    for name, expected in built.items():
        if name in features and not np.array_equal(features[name][live], expected):
            raise AdSimStateError(f"the features are not those of the episodes' requests ({name})",
                                  key=f"{key}.{name}")
    return level


def check_compiled_state(ctx, state, arrays: Mapping[str, np.ndarray]) -> None:
    """A ``CompiledEpisodeBatch`` state (``arrays`` are the batch's own): the reference checks on its requests and
    arrays, plus the kernels' own bookkeeping (table rows, levels, trie nodes) agreeing with the prefixes."""
    if not isinstance(state, Mapping) or set(state) != {"arrays", "synthetic"}:
        got = sorted(state) if isinstance(state, Mapping) else type(state).__name__
        raise AdSimStateError(f"must be a dict with keys ['arrays', 'synthetic'] (as get_state returns it), got {got}",
                              key="episodes")
    if not isinstance(state["synthetic"], bool | np.bool_):
        raise AdSimStateError(f"must be true or false, got {state['synthetic']!r}", key="episodes.synthetic")
    check_mapping(state["arrays"], arrays, "episodes.arrays")
    a, key = state["arrays"], "episodes.arrays"
    table = ctx.request_table(bool(state["synthetic"]))
    rows = a["table_row"]
    outside = np.flatnonzero((rows < 0) | (rows >= len(table["request_id"])))
    if len(outside):
        raise AdSimStateError(f"episode {outside[0]}'s request row {int(rows[outside[0]])} is outside the "
                              f"{len(table['request_id'])} requests (synthetic={bool(state['synthetic'])})",
                              key=f"{key}.table_row")
    requests = {column: values[rows] for column, values in table.items()}
    features = {name: a[name] for name in ("user", "context", "history_codes", "history_type")}
    level = check_episodes(ctx, requests, a["prefix"], a["mask"], a["done"], features, key)
    depth = a["prefix"].shape[1]
    for name, expected in (("level", level), ("obs_level", np.minimum(level, depth - 1)[:, None])):
        wrong = np.flatnonzero((a[name] != expected).reshape(len(level), -1).any(axis=1))
        if len(wrong):
            raise AdSimStateError(f"episode {wrong[0]}'s {name} disagrees with its prefix", key=f"{key}.{name}")
    child = ctx.simulator.trie.tables.child
    node = np.zeros(len(level), dtype=np.int64)
    for d in range(int(level.max(initial=0))):
        walking = np.flatnonzero(level > d)
        node[walking] = child[node[walking], a["prefix"][walking, d]]
    wrong = np.flatnonzero(~a["done"] & (a["node"] != node))
    if len(wrong):
        raise AdSimStateError(f"episode {wrong[0]}'s trie node disagrees with its prefix", key=f"{key}.node")
