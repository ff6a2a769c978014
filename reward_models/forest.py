"""A LightGBM forest flattened into arrays and walked by numba kernels, giving exactly ``Booster.predict``'s numbers.

Why: the simulator scores small batches, where ``Booster.predict`` spends most of its time in Python and C-API
overhead rather than in the trees. The compiled forest removes that overhead and keeps the answer bit-for-bit
LightGBM's (up to the last ulp of ``exp`` in the sigmoid):

- decisions follow LightGBM's ``include/LightGBM/tree.h`` (``NumericalDecision``, ``CategoricalDecision``)
  including its missing-value types, and the C API's dense-row reading, which drops |x| <= kZeroThreshold (reads
  it as 0.0);
- the raw score is the float64 sum of the trees in tree order, from 0.0, as ``GBDT::PredictRaw`` adds them;
- the trees are those ``Booster.predict`` would use: ``best_iteration`` when the booster has one, else all
  (``model_to_string`` resolves ``num_iteration`` the same way).

Categorical values are truncated to int as C++ does on x86-64: NaN and values outside int32 (which convert to
INT_MIN there) go right, like negative codes; a code not in the split's bitset goes right too.

Kernels are compiled with ``cache=True``, so the JIT cost is paid once per machine, not once per process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import lightgbm as lgb
import numpy as np
from numba import njit

K_ZERO_THRESHOLD = float(np.float32(1e-35))
"""LightGBM's ``kZeroThreshold`` (a float literal stored in a double): |x| at or below it counts as zero."""
CATEGORICAL, DEFAULT_LEFT = 1, 2
"""Bits of LightGBM's ``decision_type``; bits 2-3 hold the missing type."""
MISSING_NONE, MISSING_ZERO, MISSING_NAN = 0, 1, 2
FEATURE, LEFT, RIGHT, DECISION, CAT_BEGIN, CAT_WORDS = range(6)
"""Columns of ``CompiledForest.nodes``. A child >= 0 is a node row; a child < 0 is ``~leaf``."""


@dataclass(frozen=True, eq=False)
class CompiledForest:
    """The trees of a single-output LightGBM model as contiguous arrays (one row per internal node).

    Build it with ``from_booster``; ``raw_score``/``predict`` take an (N, n_features) matrix, ``*_row`` one row.
    """

    n_features: int
    roots: np.ndarray
    """(T,) int32: each tree's root node row, or ``~leaf`` for a tree that is a single leaf."""
    nodes: np.ndarray
    """(M, 6) int32: feature, left, right, decision_type, bitset offset and bitset words (categorical nodes)."""
    threshold: np.ndarray
    """(M,) float64: numerical nodes' thresholds (unused by categorical nodes)."""
    cat_bits: np.ndarray
    """(W,) uint32: the categorical splits' bitsets; code c goes left when bit c of the node's words is set."""
    leaf_value: np.ndarray
    """(L,) float64."""
    sigmoid: float | None
    """The ``binary`` objective's sigmoid parameter; None for any other objective (raw scores only)."""

    @classmethod
    def from_booster(cls, booster: lgb.Booster, num_iteration: int | None = None) -> CompiledForest:
        """The trees ``booster.predict(x, num_iteration=num_iteration)`` uses."""
        return cls.from_model_string(booster.model_to_string(num_iteration=num_iteration))

    @classmethod
    def from_model_string(cls, text: str) -> CompiledForest:
        """Parse LightGBM's text model format (what ``model.txt`` holds)."""
        header, trees = _parse_model_string(text)
        if "average_output" in header:
            raise ValueError("random-forest models (average_output) are not supported")
        if int(header.get("num_tree_per_iteration", "1")) != 1:
            raise ValueError("only single-output models (one tree per iteration) are supported, got "
                             f"num_tree_per_iteration={header['num_tree_per_iteration']}")
        roots: list[int] = []
        # empty first pieces give the arrays their dtypes when every tree is a single leaf
        nodes, thresholds = [np.zeros((0, 6), np.int32)], [np.zeros(0)]
        bits, leaves = [np.zeros(0, np.uint32)], [np.zeros(0)]
        n_nodes = n_leaves = n_words = 0
        for i, tree in enumerate(trees):
            if tree.get("is_linear", "0") != "0":
                raise ValueError(f"tree {i} is linear (linear_tree=True): not supported")
            leaf_value = _numbers(tree["leaf_value"], np.float64)
            m = int(tree["num_leaves"]) - 1
            roots.append(n_nodes if m > 0 else ~n_leaves)
            if m > 0:
                block = np.zeros((m, 6), np.int32)
                block[:, FEATURE] = _numbers(tree["split_feature"], np.int32)
                for col, key in ((LEFT, "left_child"), (RIGHT, "right_child")):
                    child = _numbers(tree[key], np.int32)
                    # local node c -> n_nodes + c; local leaf ~l -> ~(n_leaves + l), which is c - n_leaves
                    block[:, col] = np.where(child >= 0, child + n_nodes, child - n_leaves)
                block[:, DECISION] = _numbers(tree["decision_type"], np.int32)
                threshold = _numbers(tree["threshold"], np.float64)
                categorical = (block[:, DECISION] & CATEGORICAL) > 0
                if categorical.any():
                    bounds = _numbers(tree["cat_boundaries"], np.int32)
                    cat = threshold[categorical].astype(np.int32)
                    block[categorical, CAT_BEGIN] = n_words + bounds[cat]
                    block[categorical, CAT_WORDS] = bounds[cat + 1] - bounds[cat]
                    words = _numbers(tree["cat_threshold"], np.uint32)
                    bits.append(words)
                    n_words += len(words)
                nodes.append(block)
                thresholds.append(threshold)
            leaves.append(leaf_value)
            n_nodes, n_leaves = n_nodes + m, n_leaves + m + 1
        objective = header.get("objective", "").split()
        sigmoid = None
        if objective[:1] == ["binary"]:
            sigmoid = next(float(t.split(":", 1)[1]) for t in objective if t.startswith("sigmoid:"))
        return cls(
            n_features=int(header["max_feature_idx"]) + 1,
            roots=np.array(roots, np.int32),
            nodes=np.concatenate(nodes),
            threshold=np.concatenate(thresholds),
            cat_bits=np.concatenate(bits),
            leaf_value=np.concatenate(leaves),
            sigmoid=sigmoid,
        )

    @property
    def num_trees(self) -> int:
        return len(self.roots)

    def raw_score(self, x: np.ndarray) -> np.ndarray:
        """(N,) float64 sums of the trees, as ``Booster.predict(x, raw_score=True)``."""
        out = np.empty(len(x))
        _raw_scores(self._matrix(x), *self.arrays(), out)
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N,) probabilities of the ``binary`` objective, as ``Booster.predict(x)``."""
        out = np.empty(len(x))
        _probabilities(self._matrix(x), *self.arrays(), self._sigmoid(), out)
        return out

    def raw_score_row(self, row: np.ndarray) -> float:
        """The raw score of one (n_features,) row, without the cost of a batch."""
        return float(self.raw_score(self._row(row)[None])[0])

    def predict_row(self, row: np.ndarray) -> float:
        """The probability of one (n_features,) row, without the cost of a batch."""
        return float(self.predict(self._row(row)[None])[0])

    # ------------------------------------------------------------------------------------------- helpers
    @cached_property
    def _kernel_arrays(self) -> tuple[np.ndarray, ...]:
        bits = np.r_[self.cat_bits, np.zeros(1, np.uint32)]  # never empty: a kernel may index it
        return self.roots, _walk_nodes(self.nodes, self.threshold), self.threshold, bits, self.leaf_value

    def arrays(self) -> tuple[np.ndarray, ...]:
        """``roots, nodes, threshold, cat_bits, leaf_value`` as the kernels (``raw_block``) take them: ``nodes``
        with its decision column turned into the walk flags (``_walk_nodes``)."""
        return self._kernel_arrays

    def _sigmoid(self) -> float:
        if self.sigmoid is None:
            raise ValueError("predict needs a model with the 'binary' objective; use raw_score")
        return self.sigmoid

    def _matrix(self, x: np.ndarray) -> np.ndarray:
        x = _as_lightgbm_floats(x)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected an (N, {self.n_features}) matrix, got shape {x.shape}")
        return x

    def _row(self, row: np.ndarray) -> np.ndarray:
        row = _as_lightgbm_floats(row)
        if row.shape != (self.n_features,):
            raise ValueError(f"expected a ({self.n_features},) row, got shape {row.shape}")
        return row


def _as_lightgbm_floats(x: np.ndarray) -> np.ndarray:
    """float32 and float64 as they are, anything else as float32: what LightGBM's Python package passes to C."""
    x = np.asarray(x)
    return np.ascontiguousarray(x, dtype=x.dtype if x.dtype in (np.float32, np.float64) else np.float32)


def _parse_model_string(text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The header's and each tree's ``key=value`` lines (a bare key maps to "")."""
    header: dict[str, str] = {}
    trees: list[dict[str, str]] = []
    section = header
    for line in text.splitlines():
        if line == "end of trees":
            break
        if line.startswith("Tree="):
            section = {}
            trees.append(section)
        elif line:
            key, _, value = line.partition("=")
            section[key] = value
    return header, trees


def _numbers(field: str, dtype: type) -> np.ndarray:
    """A space-separated list of numbers, parsed exactly (LightGBM writes doubles with 17 digits)."""
    values = [float(v) for v in field.split()] if np.dtype(dtype).kind == "f" else [int(v) for v in field.split()]
    return np.array(values, dtype=dtype)


# ------------------------------------------------------------------------------------------------ kernels
IS_CATEGORICAL, ZERO_IS_MISSING, ZERO_LEFT, NAN_LEFT = 1, 2, 4, 8
"""Bits of a walk node's flags: a categorical split; a numerical one whose zeros take the default direction
(missing type Zero, then ``ZERO_LEFT`` is that direction); where NaN goes (``NAN_LEFT``)."""
NORMAL, ZERO, NAN = 0, 1, 2
"""Classes of a prepared value: |x| <= kZeroThreshold is read as 0.0 (``ZERO``)."""
BLOCK = 256
"""Rows walked together, tree by tree: one tree's nodes stay in cache while the block's rows pass through it."""


def _walk_nodes(nodes: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """(M, 6) int32 nodes for the kernels: feature, left, right, flags, bitset offset and words.

    The flags resolve LightGBM's missing-value rules once per node (tree.h ``NumericalDecision``): a zero takes
    the default direction only under missing type Zero (elsewhere it is 0.0 <= threshold); NaN takes the default
    direction under types Zero and NaN, and is read as 0.0 under type None.
    """
    walk = nodes.copy()
    decision = nodes[:, DECISION]
    missing, default_left = (decision >> 2) & 3, (decision & DEFAULT_LEFT) > 0
    categorical = (decision & CATEGORICAL) > 0
    nan_left = np.where(missing == MISSING_NONE, 0.0 <= threshold, default_left)
    zero_missing = ~categorical & (missing == MISSING_ZERO)
    walk[:, DECISION] = (categorical * IS_CATEGORICAL | zero_missing * ZERO_IS_MISSING
                         | (zero_missing & default_left) * ZERO_LEFT | (~categorical & nan_left) * NAN_LEFT)
    return walk


@njit(cache=True)
def _prepare(x, n, value, kind, code):
    """Each of the first n rows' values as the trees read them: float64 with tiny values as 0.0 (the C API leaves
    them out of a dense row), their class, and the categorical code (-1 for NaN and anything outside int32)."""
    for r in range(n):
        for j in range(x.shape[1]):
            v = np.float64(x[r, j])
            c = NORMAL
            if -K_ZERO_THRESHOLD <= v <= K_ZERO_THRESHOLD:
                v, c = 0.0, ZERO
            elif math.isnan(v):
                c = NAN
            value[r, j], kind[r, j] = v, c
            # C++ int truncation: (-1, 0) -> 0; NaN and anything outside int32 -> INT_MIN, i.e. negative -> right
            # (testing the range first also keeps numba's float -> int cast defined)
            code[r, j] = np.int64(v) if c != NAN and -1.0 < v < 2147483648.0 else -1


@njit(cache=True)
def _leaf(r, root, nodes, threshold, cat_bits, value, kind, code):
    """The leaf prepared row ``r`` reaches from ``root`` (LightGBM's ``Tree::GetLeaf``)."""
    node = root
    while node >= 0:
        feature, flags = nodes[node, FEATURE], nodes[node, DECISION]
        if flags & IS_CATEGORICAL:
            go_left = False
            c = code[r, feature]
            if c >= 0 and (c >> 5) < nodes[node, CAT_WORDS]:
                go_left = ((cat_bits[nodes[node, CAT_BEGIN] + (c >> 5)] >> np.uint32(c & 31)) & np.uint32(1)) == 1
        else:
            go_left = value[r, feature] <= threshold[node]
            k = kind[r, feature]
            if k == NAN:
                go_left = (flags & NAN_LEFT) > 0
            elif k == ZERO and flags & ZERO_IS_MISSING:
                go_left = (flags & ZERO_LEFT) > 0
        node = nodes[node, LEFT] if go_left else nodes[node, RIGHT]
    return ~node


@njit(cache=True)
def raw_block(x, n, roots, nodes, threshold, cat_bits, leaf_value, out):
    """Raw scores of the first n rows of ``x`` into ``out[:n]``: tree by tree over the rows, each row's sum still
    from 0.0 in tree order (``GBDT::PredictRaw``). ``nodes`` as ``CompiledForest.arrays`` gives them."""
    value = np.empty((n, x.shape[1]))
    kind = np.empty((n, x.shape[1]), np.int8)
    code = np.empty((n, x.shape[1]), np.int64)
    _prepare(x, n, value, kind, code)
    out[:n] = 0.0
    for t in range(roots.shape[0]):
        root = roots[t]
        for r in range(n):
            out[r] += leaf_value[_leaf(r, root, nodes, threshold, cat_bits, value, kind, code)]


@njit(cache=True)
def probability(raw, sigmoid):
    """The binary objective's probability of a raw score (``BinaryLogloss::ConvertOutput``)."""
    return 1.0 / (1.0 + math.exp(-sigmoid * raw))


@njit(cache=True)
def _raw_scores(x, roots, nodes, threshold, cat_bits, leaf_value, out):
    for lo in range(0, x.shape[0], BLOCK):
        n = min(BLOCK, x.shape[0] - lo)
        raw_block(x[lo:lo + n], n, roots, nodes, threshold, cat_bits, leaf_value, out[lo:lo + n])


@njit(cache=True)
def _probabilities(x, roots, nodes, threshold, cat_bits, leaf_value, sigmoid, out):
    _raw_scores(x, roots, nodes, threshold, cat_bits, leaf_value, out)
    for i in range(x.shape[0]):
        out[i] = probability(out[i], sigmoid)
