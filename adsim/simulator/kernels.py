"""The simulator's hot path as numba kernels over flat tables: eligibility, trie masks, history tokens, process
rewards and the pairs a path resolves to.

Why: an env step touches a few hundred numbers, and the numpy reference pays a Python call and a temporary array
for each operation on them (about 1,400 Python calls per episode). These kernels do the same arithmetic in one
call per reset and per step. The numpy code stays the definition (``backend="reference"``); every kernel here
must give its numbers exactly, and ``tests/envs/test_fast_path_parity.py`` and the unit tests check that.

Eligibility is lazy: a code is legal when its child's range of trie-sorted ads holds an eligible ad, and the
kernels look for one in that range, instead of building the (n_ads,) allowed vector and its prefix sums first
(the answer is the reference's ``count > 0``). They read a request's targeting and liveness as bitsets (one per
targeting combination and per day, ``EligibilityTables``) and the budget only for the few ads whose budget runs
out that day. Where a caller passes its own allowed matrix, the kernels read it instead (``use_allowed``).

Sums over a row follow numpy's pairwise summation (``pairwise_sum``), so means are bit-identical to ``ndarray.sum``.

Kernels are compiled with ``cache=True``: the JIT cost (seconds per kernel) is paid once per machine, in
``__pycache__``; ``announce_compiled`` says which ones a process had to compile. Tables are passed as plain tuples
(``plain``) and unpacked by position: numba types NamedTuple arguments slowly. The episode kernels, called at
every reset and step, take theirs packed in one StructRef (``EpisodeKernel``).
"""

from __future__ import annotations

import sys
import time
from typing import Literal, NamedTuple

import numpy as np
from numba import njit, types
from numba.experimental import structref

from adsim.trie import SidTrie, TrieTables

Backend = Literal["reference", "compiled"]
BACKENDS = ("reference", "compiled")
"""``reference``: the numpy implementation, the definition. ``compiled``: these kernels, the same numbers."""


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'reference' or 'compiled', got {backend!r}")


class EligibilityTables(NamedTuple):
    """``Eligibility``'s arrays, the ads' in a given order (the trie's, so a node's ads are contiguous)."""

    user_attr: np.ndarray
    """(n_users, 3) int64: age bucket, gender, region."""
    ad_attr: np.ndarray
    """(4, n_items) int64 by sorted position: age, gender and region target masks, created day."""
    exhausted: np.ndarray
    """(n_days, n_items) float64 by sorted position: time the day's budget ran out (inf if never)."""
    order: np.ndarray
    """(n_items,) int64: sorted position -> item id."""
    combo: np.ndarray
    """(n_users,) int64: the user's targeting combination (a row of ``target_bits``)."""
    target_bits: np.ndarray
    """(n_combos, n_words) int64 bitsets by sorted position: the ad's targeting matches the combination."""
    created_bits: np.ndarray
    """(n_created_days, n_words) int64 bitsets: the ad exists on day ``created_lo + row`` (the last row: ever after)."""
    created_lo: int
    exhausts_bits: np.ndarray
    """(n_days, n_words) int64 bitsets: the ad's budget runs out that day (its ``exhausted`` time is finite)."""


class EventTables(NamedTuple):
    """An ``EventIndex``'s search keys and the payloads the kernels read."""

    code: np.ndarray
    """(n_events + 1,) int64: ``group << shift | ts``, the sentinel -1 first."""
    shift: int
    item: np.ndarray
    """(n_events + 1,) int: the event's item (organic item or ad id)."""
    action: np.ndarray
    """(n_events + 1,) int8: the action type of an ad event (a placeholder for organic events)."""
    offsets: np.ndarray
    """(n_groups + 1,) int64: group g's events are [offsets[g], offsets[g + 1]), so a search reads a few cache
    lines of the group's own events instead of a binary search over all of them."""


class HistoryTables(NamedTuple):
    """What ``ObservationBuilder`` reads to build history tokens."""

    organic: EventTables
    ads: EventTables
    organic_codes: np.ndarray
    """(n_organic_items, L) int64, -1 padded to the ads' depth."""
    ad_codes: np.ndarray
    """(n_ads, L) int64."""
    tokens: np.ndarray
    """(3,) int64: TOKEN_PAD, TOKEN_ORGANIC, TOKEN_IMPRESSION."""
    n_organic: int
    """O-tokens first (the rest of the history is I-tokens)."""


class ProcessTables(NamedTuple):
    """What HEPO's process rewards read: the users' successes, the ads' codes and the per-level alphas."""

    successes: EventTables
    ad_codes: np.ndarray
    """(n_ads, L) int64."""
    alphas: np.ndarray
    """(L - 1,) float64: alpha of each coarse level (0 where the config has none)."""
    history: int
    """Successes of the user looked at."""
    conditional: bool
    """P_l(t | z_<l): count only the successes whose ad shares the path's prefix (``popularity="prefix"``)."""


# ---------------------------------------------------------------------------------------------- numerics
@njit(cache=True, inline="always")
def _pairwise_block(a, lo, n):
    """numpy's pairwise sum of at most 128 numbers: eight running sums, combined as a tree, then the rest."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    while i < n - n % 8:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True)
def pairwise_sum(a, lo, n):
    """Sum of ``a[lo:lo + n]`` in numpy's pairwise order (``pairwise_sum`` in numpy's loops_utils), which is what
    ``ndarray.sum`` over a contiguous row computes: bit-identical to it.

    numpy halves a run longer than 128 (the first half a multiple of 8) and adds the halves' sums; this walks that
    tree with an explicit stack, since numba's cache mishandles recursive functions.
    """
    if n <= 128:
        return _pairwise_block(a, lo, n)
    los, ns, left = np.empty(64, np.int64), np.empty(64, np.int64), np.empty(64)
    state = np.zeros(64, np.int64)  # 0: not split yet, 1: left half running, 2: right half running
    top, los[0], ns[0] = 0, lo, n
    while True:
        m = ns[top]
        if m > 128:
            half = m // 2 - (m // 2) % 8
            state[top] = 1
            top += 1
            los[top], ns[top], state[top] = los[top - 1], half, 0
            continue
        value = _pairwise_block(a, los[top], m)
        top -= 1
        while top >= 0:
            if state[top] == 1:
                half = ns[top] // 2 - (ns[top] // 2) % 8
                left[top], state[top] = value, 2
                top += 1
                los[top], ns[top], state[top] = los[top - 1] + half, ns[top - 1] - half, 0
                break
            value = left[top] + value
            top -= 1
        if top < 0:
            return value


# ---------------------------------------------------------------------------------------------- eligibility
# Helpers take arrays, not the tables' NamedTuples: numba's code for a field read of a tuple inside a loop is
# about a hundred times slower. The kernels Python calls unpack the tables once at their top.
@njit(cache=True, inline="always")
def _eligible(p, ua, ug, ur, day, day_row, ts, ad_attr, exhausted):
    """Ad at sorted position ``p``: targeting matches the user, live on ``day``, budget left at ``ts``."""
    return ((((ad_attr[0, p] >> ua) & (ad_attr[1, p] >> ug) & (ad_attr[2, p] >> ur)) & 1) != 0
            and ad_attr[3, p] <= day and exhausted[day_row, p] >= ts)


@njit(cache=True, inline="always")
def _walk(path, d, child):
    """Node at depth ``d`` reached by ``path[:d]``; -1 when the path leaves the trie (``SidTrie.walk``)."""
    node = 0
    width = child.shape[1]
    for level in range(d):
        code = path[level]
        if code < 0 or code >= width:
            return -1
        node = child[node, code]
        if node < 0:
            return -1
    return node


@njit(cache=True, inline="always")
def _children_mask_allowed(node, child, start, end, order, allowed_row, out):
    """(W,) legal codes below ``node`` (none when -1): the children whose range holds an ad ``allowed_row`` allows."""
    for c in range(len(out)):
        kid = child[node, c] if node >= 0 else -1
        legal = False
        if kid >= 0:
            for p in range(start[kid], end[kid]):
                if allowed_row[order[p]]:
                    legal = True
                    break
        out[c] = legal


@njit(cache=True, inline="always")
def _static_bits(u, day, combo, target_bits, created_bits, created_lo, out):
    """(n_words,) bitset of the ads whose targeting matches user ``u`` and that exist on ``day``."""
    if day < created_lo:
        out[:] = 0
        return
    c, d = combo[u], min(day - created_lo, created_bits.shape[0] - 1)
    for w in range(len(out)):
        out[w] = target_bits[c, w] & created_bits[d, w]


@njit(cache=True, inline="always")
def _any_in_bits(lo, hi, bits, exhausts, exhausted_row, ts):
    """Whether sorted positions [lo, hi) hold an eligible ad: its bit set in ``bits`` (targeting, liveness), and
    budget left at ``ts`` (only ads whose ``exhausts`` bit is set can have run out)."""
    p = lo
    while p < hi:
        w = p >> 6
        if bits[w] == 0:
            p = (w + 1) << 6
            continue
        if _bit_eligible(p, bits, exhausts, exhausted_row, ts):
            return True
        p += 1
    return False


@njit(cache=True, inline="always")
def _bit_eligible(p, bits, exhausts, exhausted_row, ts):
    """Ad at sorted position ``p`` is eligible, read from ``_static_bits`` and the day's budget."""
    w, bit = p >> 6, p & 63
    return ((bits[w] >> bit) & 1) != 0 and (((exhausts[w] >> bit) & 1) == 0 or exhausted_row[p] >= ts)


@njit(cache=True, inline="always")
def _children_mask_bits(node, child, start, end, bits, exhausts, exhausted_row, ts, out):
    """``_children_mask`` from a request's ``_static_bits``: the fast path of the episode kernels."""
    for c in range(len(out)):
        kid = child[node, c] if node >= 0 else -1
        out[c] = kid >= 0 and _any_in_bits(start[kid], end[kid], bits, exhausts, exhausted_row, ts)


@njit(cache=True)
def eligibility_rows(users, days, ts, elig, out):
    """``Eligibility.allowed`` into ``out`` (B, n_items), ads by item id."""
    user_attr, ad_attr, exhausted, order = elig[:4]
    n_days = exhausted.shape[0]
    for b in range(len(users)):
        u = users[b]
        ua, ug, ur = user_attr[u, 0], user_attr[u, 1], user_attr[u, 2]
        day_row = min(days[b], n_days - 1)
        for p in range(len(order)):
            out[b, order[p]] = _eligible(p, ua, ug, ur, days[b], day_row, ts[b], ad_attr, exhausted)


@njit(cache=True)
def prefix_sums_rows(allowed, order, out):
    """``SidTrie.allowed_prefix_sums``: (B, n_items + 1) running counts of allowed items in sorted order."""
    for b in range(allowed.shape[0]):
        out[b, 0] = 0
        for p in range(len(order)):
            out[b, p + 1] = out[b, p] + (1 if allowed[b, order[p]] else 0)


@njit(cache=True)
def legal_mask_rows(prefixes, sums, trie, out):
    """``SidTrie.legal_mask`` from prefix sums, for (B, d) prefixes: writes (B, W) bool ``out``."""
    child, start, end, _ = trie
    for b in range(prefixes.shape[0]):
        node = _walk(prefixes[b], prefixes.shape[1], child)
        for c in range(out.shape[1]):
            kid = child[node, c] if node >= 0 else -1
            out[b, c] = kid >= 0 and sums[b, end[kid]] - sums[b, start[kid]] > 0


# ---------------------------------------------------------------------------------------------- history
@njit(cache=True, inline="always")
def _last_before(code, shift, offsets, group, ts):
    """``EventIndex.last_before`` for one (group, ts): the same index, searched within the group's events."""
    key = (group << shift) | min(max(ts, 0), (1 << shift) - 1)
    if 0 <= group < len(offsets) - 1:
        lo = offsets[group]
        i = lo + np.searchsorted(code[lo : offsets[group + 1]], key) - 1
    else:
        i = np.searchsorted(code, key) - 1
    return i if (code[i] >> shift) == group else 0


@njit(cache=True)
def last_events_rows(code, shift, offsets, groups, ts, rows, valid):
    """``EventIndex.last``: (B, n) indexes of each group's last n events before ``ts``, left-padded."""
    n = rows.shape[1]
    for b in range(len(groups)):
        last = _last_before(code, shift, offsets, groups[b], ts[b])
        for j in range(n):
            idx = max(last - j, 0)
            ok = (code[idx] >> shift) == groups[b]
            rows[b, n - 1 - j] = idx if ok else 0
            valid[b, n - 1 - j] = ok


@njit(cache=True, inline="always")
def _tokens(user, ts, events, codes, token, impression, pad, codes_out, type_out, lo, n):
    """The last ``n`` events of ``user`` before ``ts`` as tokens in columns [lo, lo + n), oldest first:
    type ``token`` (organic) or ``impression - 1 + action`` (ads, ``token < 0``), -1 codes and ``pad`` where none."""
    code, shift, item, action, offsets = events
    last = _last_before(code, shift, offsets, user, ts)
    for j in range(n):
        col = lo + n - 1 - j
        idx = max(last - j, 0)
        if (code[idx] >> shift) == user:
            codes_out[col, :] = codes[item[idx], :]
            type_out[col] = token if token >= 0 else impression - 1 + np.int64(action[idx])
        else:
            codes_out[col, :] = -1
            type_out[col] = pad


@njit(cache=True, inline="always")
def _history(user, ts, organic, ads, organic_codes, ad_codes, tokens, n_organic, codes_out, type_out):
    """One request's O-tokens then I-tokens, as ``ObservationBuilder.build`` lays them out."""
    pad, token_organic, impression = tokens[0], tokens[1], tokens[2]
    _tokens(user, ts, organic, organic_codes, token_organic, impression, pad, codes_out, type_out, 0, n_organic)
    _tokens(user, ts, ads, ad_codes, -1, impression, pad, codes_out, type_out, n_organic, len(type_out) - n_organic)


@njit(cache=True)
def history_rows(users, ts, hist, codes_out, type_out):
    """``ObservationBuilder.build``'s history_codes (B, H, L) and history_type (B, H)."""
    organic, ads, organic_codes, ad_codes, tokens, n_organic = hist
    for b in range(len(users)):
        _history(users[b], ts[b], organic, ads, organic_codes, ad_codes, tokens, n_organic, codes_out[b],
                 type_out[b])


# ---------------------------------------------------------------------------------------------- process rewards
@njit(cache=True, inline="always")
def _popularity(user, ts, level, path, conditional, successes, ad_codes, history, out):
    """``Simulator.token_popularity`` of one request: (W,) share of its last successes with token t at level,
    among those whose ad starts with ``path[:level]`` when ``conditional``."""
    out[:] = 0.0
    code, shift, item, _, offsets = successes
    last = _last_before(code, shift, offsets, user, ts)
    n_valid = 0
    for j in range(history):
        idx = max(last - j, 0)
        if (code[idx] >> shift) != user:
            continue
        ad = item[idx]
        shares = True
        if conditional:
            for d in range(level):
                if ad_codes[ad, d] != path[d]:
                    shares = False
                    break
        if shares:
            out[ad_codes[ad, level]] += 1.0
            n_valid += 1
    denom = max(n_valid, 1)
    for t in range(len(out)):
        out[t] = out[t] / denom


@njit(cache=True, inline="always")
def _process_reward(popularity, legal, code, alpha, buf):
    """alpha * max(0, P(code) - mean of P over the legal codes), the mean summed as numpy sums."""
    count = 0
    for t in range(len(popularity)):
        if legal[t]:
            buf[t] = popularity[t]
            count += 1
        else:
            buf[t] = 0.0
    mean = pairwise_sum(buf, 0, len(buf)) / max(count, 1)
    chosen = popularity[min(max(code, 0), len(popularity) - 1)]
    return alpha * max(0.0, chosen - mean)


@njit(cache=True)
def process_rewards_rows(paths, users, days, ts, allowed, use_allowed, trie, elig, proc, out):
    """``Simulator.process_rewards``: (B, K, L-1) ``out`` for (B, K, L) paths."""
    child, start, end, order = trie
    _, _, exhausted, _, combo, target_bits, created_bits, created_lo, exhausts_bits = elig
    successes, ad_codes, alphas, history, conditional = proc
    width, n_days = child.shape[1], exhausted.shape[0]
    popularity, legal, buf = np.empty(width), np.empty(width, np.bool_), np.empty(width)
    bits = np.empty(target_bits.shape[1], np.int64)
    for b in range(paths.shape[0]):
        u = users[b]
        day_row = min(days[b], n_days - 1)
        if not use_allowed:
            _static_bits(u, days[b], combo, target_bits, created_bits, created_lo, bits)
        for level in range(paths.shape[2] - 1):
            alpha = alphas[level]
            if alpha == 0.0:
                continue
            if not conditional:
                _popularity(u, ts[b], level, paths[b, 0], False, successes, ad_codes, history, popularity)
            for k in range(paths.shape[1]):
                if conditional:
                    _popularity(u, ts[b], level, paths[b, k], True, successes, ad_codes, history, popularity)
                node = _walk(paths[b, k], level, child)
                if use_allowed:
                    _children_mask_allowed(node, child, start, end, order, allowed[b], legal)
                else:
                    _children_mask_bits(node, child, start, end, bits, exhausts_bits[day_row], exhausted[day_row],
                                        ts[b], legal)
                out[b, k, level] = _process_reward(popularity, legal, paths[b, k, level], alpha, buf)


# ---------------------------------------------------------------------------------------------- evaluate
@njit(cache=True)
def leaf_pairs(paths, k, users, days, ts, allowed, use_allowed, trie, elig):
    """Every (candidate, allowed ad on its leaf) pair of (B*K, L) full paths, candidates in order and ads in trie
    order (``Simulator.evaluate``'s pairs): (2, n_pairs) candidate indexes and ad ids (one array: numba boxes each
    returned array at a cost)."""
    child, start, end, order = trie
    user_attr, ad_attr, exhausted = elig[:3]
    n, depth = paths.shape
    n_days = exhausted.shape[0]
    leaf = np.empty(n, np.int64)
    for c in range(n):
        leaf[c] = _walk(paths[c], depth, child)
    counts = np.zeros(n, np.int64)
    pairs = np.empty((2, 0), np.int64)
    for sweep in range(2):  # count, then fill
        if sweep == 1:
            pairs = np.empty((2, counts.sum()), np.int64)
        at = 0
        for c in range(n):
            node = leaf[c]
            if node < 0:
                continue
            b = c // k
            u = users[b]
            ua, ug, ur = user_attr[u, 0], user_attr[u, 1], user_attr[u, 2]
            day_row = min(days[b], n_days - 1)
            for p in range(start[node], end[node]):
                ad = order[p]
                if use_allowed:
                    ok = allowed[b, ad]
                else:
                    ok = _eligible(p, ua, ug, ur, days[b], day_row, ts[b], ad_attr, exhausted)
                if not ok:
                    continue
                if sweep == 0:
                    counts[c] += 1
                else:
                    pairs[0, at], pairs[1, at] = c, ad
                    at += 1
    return pairs


@njit(cache=True)
def resolve_best(cand, ads, pctr, pcvr, ecpm, final, b, k, price, use_price):
    """Per candidate, the pair with the highest eCPM (ties: the first, as ``evaluate``'s stable lexsort; NaN
    last), then market prices and the z-score. Scores are the scorer's (n_pairs, 1) arrays. Returns (B, K)
    ``ad_id`` (-1 where invalid), ``valid``, ``won``, (5, B, K) pctr, pcvr, ecpm, final_value and zscore, and (B, K)
    ``pair``: the chosen pair's index (-1 where invalid); allocated here, as one call costs less than five."""
    n = b * k
    ad_id, valid, won = np.full(n, -1, np.int64), np.zeros(n, np.bool_), np.zeros(n, np.bool_)
    out, pair = np.zeros((5, n)), np.full(n, -1, np.int64)
    first = np.full(n, -1, np.int64)
    for i in range(len(cand)):
        c = cand[i]
        j = first[c]
        if j < 0 or (np.isnan(ecpm[j, 0]) and not np.isnan(ecpm[i, 0])) or ecpm[i, 0] > ecpm[j, 0]:
            first[c] = i
    for c in range(n):
        i = first[c]
        if i < 0:
            continue
        ad_id[c], valid[c], pair[c] = ads[i], True, i
        out[0, c], out[1, c], out[2, c], out[3, c] = pctr[i, 0], pcvr[i, 0], ecpm[i, 0], final[i, 0]
        if use_price:
            won[c] = out[2, c] >= price[c // k]
            if not won[c]:
                out[3, c] = 0.0
    zscore_rows(out[3], valid, b, k, out[4])
    return (ad_id.reshape(b, k), valid.reshape(b, k), won.reshape(b, k), out.reshape(5, b, k),
            pair.reshape(b, k))


@njit(cache=True)
def zscore_rows(values, valid, b, k, out):
    """``simulator.zscore`` of (b*k,) values as (b, k) rows into ``out`` (zero filled), in numpy's summation
    order."""
    buf = np.empty(k)
    for r in range(b):
        lo = r * k
        count = 0
        for j in range(k):
            buf[j] = values[lo + j] if valid[lo + j] else 0.0
            count += 1 if valid[lo + j] else 0
        count = max(count, 1)
        mean = pairwise_sum(buf, 0, k) / count
        for j in range(k):
            d = values[lo + j] - mean
            buf[j] = d * d if valid[lo + j] else 0.0
        std = np.sqrt(pairwise_sum(buf, 0, k) / count)
        for j in range(k):
            if valid[lo + j] and std > 0:
                out[lo + j] = (values[lo + j] - mean) / std


# ---------------------------------------------------------------------------------------------- episodes
class RequestTables(NamedTuple):
    """The requests an episode can draw (logged, then the ARR pool), by table row (the logged dtypes)."""

    user: np.ndarray
    """(n,) user ids."""
    day: np.ndarray
    """(n,) days."""
    ts: np.ndarray
    """(n,) times."""
    context: np.ndarray
    """(6, n) the observation's context features (``CONTEXT_FEATURES``, one common integer dtype), made float32
    per episode as ``ObservationBuilder.context`` does."""


class EpisodeTables(NamedTuple):
    """Everything the episode kernels read (built once per simulator context)."""

    trie: TrieTables
    elig: EligibilityTables
    hist: HistoryTables
    proc: ProcessTables
    user_features: np.ndarray
    """(n_users, 5) float32: the observation's user features."""
    requests: RequestTables


class EpisodeArrays(NamedTuple):
    """The state of N episodes, written in place by the kernels."""

    table_row: np.ndarray  # (N,) int64 request of each episode (a RequestTables row)
    prefix: np.ndarray  # (N, L) int64, -1 for open levels
    level: np.ndarray  # (N,) int64 levels chosen so far
    obs_level: np.ndarray  # (N, 1) int64 the observation's level: min(level, L-1)
    node: np.ndarray  # (N,) int64 trie node of the prefix
    mask: np.ndarray  # (N, W) bool legal codes now
    done: np.ndarray  # (N,) bool
    user: np.ndarray  # (N, 5) float32
    context: np.ndarray  # (N, 6) float32
    history_codes: np.ndarray  # (N, H, L) int64
    history_type: np.ndarray  # (N, H) int64


NO_ALLOWED = np.zeros((1, 1), dtype=np.bool_)
"""What ``allowed`` is when eligibility is computed (``use_allowed=False``)."""


@structref.register
class _EpisodeKernelType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class EpisodeKernel(structref.StructRefProxy):
    """What the episode kernels read and write, as one numba StructRef: the ``EpisodeTables`` parts (plain
    tuples) and a batch's ``EpisodeArrays`` (the same memory). Why: numba unboxes every array of every argument
    on each call, about 4 us for the fifty arrays of these tables, more than a step's work at batch 1; a
    StructRef is one reference. Field types follow the arrays' (the kernels compile once per set, cached)."""


_EPISODE_FIELDS = ("trie", "elig", "hist", "proc", "user_features", "requests", "arrays")
structref.define_proxy(EpisodeKernel, _EpisodeKernelType, list(_EPISODE_FIELDS))


@njit(cache=True)
def _pack_episodes(trie, elig, hist, proc, user_features, requests, arrays):
    return EpisodeKernel(trie, elig, hist, proc, user_features, requests, arrays)


def episode_kernel(tables: EpisodeTables, arrays: EpisodeArrays) -> EpisodeKernel:
    """``tables`` and ``arrays`` packed for ``start_rows`` and ``step_rows``."""
    return _pack_episodes(*plain(tables), plain(arrays))


@njit(cache=True)
def start_rows(rows, table_rows, kernel):
    """Begin episodes ``rows`` on requests ``table_rows``: features, history tokens, empty prefix, root mask."""
    child, start, end, _ = kernel.trie
    _, _, exhausted, _, combo, target_bits, created_bits, created_lo, exhausts_bits = kernel.elig
    organic, ads, organic_codes, ad_codes, tokens, n_organic = kernel.hist
    req_user, req_day, req_ts, req_context = kernel.requests
    user_features = kernel.user_features
    table_row, prefix, level, obs_level, node, mask, done, user, context, history_codes, history_type = kernel.arrays
    n_days = exhausted.shape[0]
    bits = np.empty(target_bits.shape[1], np.int64)
    for i in range(len(rows)):
        r, t = rows[i], table_rows[i]
        u, day, ts = req_user[t], req_day[t], req_ts[t]
        table_row[r] = t
        user[r, :] = user_features[u, :]
        for j in range(req_context.shape[0]):
            context[r, j] = np.float32(req_context[j, t])
        _history(u, ts, organic, ads, organic_codes, ad_codes, tokens, n_organic, history_codes[r], history_type[r])
        prefix[r, :] = -1
        level[r], obs_level[r, 0], node[r], done[r] = 0, 0, 0, False
        day_row = min(day, n_days - 1)
        _static_bits(u, day, combo, target_bits, created_bits, created_lo, bits)
        _children_mask_bits(0, child, start, end, bits, exhausts_bits[day_row], exhausted[day_row], ts, mask[r])


@njit(cache=True)
def step_rows(rows, actions, kernel, process_rewards, process_scale, penalty, reward, terminated, illegal, terminal,
              pairs):
    """Apply ``actions`` to episodes ``rows`` (``EpisodeBatch.step`` up to scoring the last level); returns the
    number of pairs to score.

    An illegal action ends its episode with ``penalty``; a legal one extends the prefix, earns the process reward
    at a coarse level (times ``process_scale``) and refreshes the mask; at the last level the episode ends,
    ``terminal`` marks it and its (terminal episode, eligible ad) pairs go to ``pairs`` (2, capacity), in
    ``evaluate``'s order, for the caller to score (the scorer is Python). The outputs of ``rows`` are written
    whole (so buffers can be reused).
    """
    child, start, end, order = kernel.trie
    _, _, exhausted, _, combo, target_bits, created_bits, created_lo, exhausts_bits = kernel.elig
    successes, ad_codes, alphas, history, conditional = kernel.proc
    req_user, req_day, req_ts, _ = kernel.requests
    table_row, prefix, level, obs_level, node, mask, done = kernel.arrays[:7]
    width, depth, n_days = mask.shape[1], prefix.shape[1], exhausted.shape[0]
    popularity, buf = np.empty(width), np.empty(width)
    bits = np.empty(target_bits.shape[1], np.int64)
    n_terminal, n_pairs = 0, 0
    for i in range(len(rows)):
        r, a = rows[i], actions[i]
        reward[r], terminated[r], illegal[r], terminal[r] = 0.0, False, False, False
        if not mask[r, a]:
            reward[r], terminated[r], illegal[r], done[r] = penalty, True, True, True
            mask[r, :] = False
            continue
        d = level[r]
        kid = child[node[r], a]
        prefix[r, d] = a
        level[r], obs_level[r, 0], node[r] = d + 1, min(d + 1, depth - 1), kid
        t = table_row[r]
        u, day, ts = req_user[t], req_day[t], req_ts[t]
        day_row = min(day, n_days - 1)
        if d == depth - 1:
            terminal[r], terminated[r], done[r] = True, True, True
            mask[r, :] = False
            _static_bits(u, day, combo, target_bits, created_bits, created_lo, bits)
            for p in range(start[kid], end[kid]):
                if _bit_eligible(p, bits, exhausts_bits[day_row], exhausted[day_row], ts):
                    pairs[0, n_pairs], pairs[1, n_pairs] = n_terminal, order[p]
                    n_pairs += 1
            n_terminal += 1
            continue
        if process_rewards:
            value = 0.0
            if alphas[d] != 0.0:
                _popularity(u, ts, d, prefix[r], conditional, successes, ad_codes, history, popularity)
                value = _process_reward(popularity, mask[r], a, alphas[d], buf)
            reward[r] = value * process_scale
        _static_bits(u, day, combo, target_bits, created_bits, created_lo, bits)
        _children_mask_bits(kid, child, start, end, bits, exhausts_bits[day_row], exhausted[day_row], ts, mask[r])
    return n_pairs


# ---------------------------------------------------------------------------------------------- entry points
def plain(tables: tuple) -> tuple:
    """``tables`` with every NamedTuple as a plain tuple: numba types plain tuples of arrays in C, NamedTuples in
    Python (about 10 us a call). The kernels unpack their arguments by position, so they take either."""
    return tuple(plain(v) if isinstance(v, tuple) else v for v in tables)


def allowed_prefix_sums(trie: SidTrie, allowed: np.ndarray) -> np.ndarray:
    """``trie.allowed_prefix_sums(allowed)`` for (B, n_items) ``allowed``, compiled."""
    allowed = np.ascontiguousarray(allowed, dtype=bool)
    if allowed.ndim != 2 or allowed.shape[1] != trie.n_items:
        raise ValueError(f"allowed must be (B, {trie.n_items}), got {allowed.shape}")
    out = np.empty((len(allowed), trie.n_items + 1), dtype=np.int32)
    prefix_sums_rows(allowed, trie.order, out)
    return out


def legal_mask(trie: SidTrie, prefixes: np.ndarray, prefix_sums: np.ndarray) -> np.ndarray:
    """``trie.legal_mask(prefixes, prefix_sums)`` for (B, d) prefixes and (B, n_items + 1) sums, compiled."""
    prefixes = np.ascontiguousarray(prefixes, dtype=np.int64)
    sums = np.ascontiguousarray(prefix_sums)
    if prefixes.ndim != 2 or prefixes.shape[1] >= trie.depth or sums.shape != (len(prefixes), trie.n_items + 1):
        raise ValueError(f"expected (B, d < {trie.depth}) prefixes and (B, {trie.n_items + 1}) prefix sums, got "
                         f"{prefixes.shape} and {sums.shape}")
    out = np.empty((len(prefixes), trie.width), dtype=bool)
    legal_mask_rows(prefixes, sums, plain(trie.tables), out)
    return out


KERNELS = (eligibility_rows, prefix_sums_rows, legal_mask_rows, last_events_rows, history_rows, process_rewards_rows,
           leaf_pairs, resolve_best, _pack_episodes, start_rows, step_rows)
"""The kernels Python calls (the others are inlined into them)."""

_announced: set[str] = set()


def announce_compiled(started: float) -> None:
    """Say once per process which kernels this process compiled (not found in numba's cache) since ``started``."""
    compiled = [k.__name__ for k in KERNELS if sum(k.stats.cache_misses.values()) and k.__name__ not in _announced]
    if compiled:
        _announced.update(compiled)
        print(f"adsim: compiled numba kernels {', '.join(compiled)} in {time.perf_counter() - started:.1f} s "
              f"(cached in {KERNELS[0].stats.cache_path}; later processes load them)", file=sys.stderr)
