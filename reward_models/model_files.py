"""Reward-model files checked before LightGBM sees them: no input may abort the process.

LightGBM's text-model parser trusts its input: it jumps through ``tree_sizes`` without bounds checks and parses the
trees in an OpenMP loop whose fatal errors terminate the process, so a truncated ``model.txt`` ends Python with
SIGABRT or SIGSEGV, beyond any ``try``. ``check_model_text`` therefore checks the whole format first, as the parser
reads it: the header keys and their counts (``feature_names`` and ``feature_infos`` against ``max_feature_idx``),
each ``Tree=`` block at the offset ``tree_sizes`` gives, every array of every tree at its exact length and type,
split features in range, children forming one tree, categorical bounds, finite leaf values, and ``end of trees``
where the sizes end. ``booster_from_text`` then loads the checked text itself (never re-reading the file).

``check_bundle_models`` checks a bundle's ``reward_models/`` as a whole: ``scorer.json``, the SID codes it uses,
and that ``pctr/`` and ``pcvr/`` are the models the manifest says (label, feature list, training rows, trees), and
with ``probe`` loads and runs both in a child process, so even a gap in these checks cannot take the caller down.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from adsim.data.integrity import load_array
from adsim.errors import AdSimDataError

MODEL_FILE, META_FILE = "model.txt", "meta.json"
FORMAT_VERSION = 1
"""Of a saved model's ``meta.json`` (``LightGBMRewardModel.save``)."""
SCORER_FILE, SID_FILE = "scorer.json", "sid_codes.npy"
"""The files ``reward_models.scorer.RewardScorer.save`` writes beside the models."""
_HEADER_INTS = ("num_class", "num_tree_per_iteration", "label_index", "max_feature_idx")
_INT = re.compile(r"-?[0-9]{1,18}")
_FLOAT = re.compile(r"-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]{1,3})?|-?inf|nan")
_IMPORTANCE = re.compile(r"[^=\s]+=[0-9]{1,18}")
_PARAMETER = re.compile(r"\[[a-z0-9_]+: [^\[\]\n]*\]")
_MAX_LINES_PER_TREE = 22
"""LightGBM reads at most this many ``key=value`` lines of a tree."""
_TREE_ARRAYS = {  # name: (length as a function of (num_leaves, num_cat), kind, required)
    "leaf_value": (lambda leaves, cats: leaves, float, True),
    "split_feature": (lambda leaves, cats: leaves - 1, int, True),
    "threshold": (lambda leaves, cats: leaves - 1, float, True),
    "decision_type": (lambda leaves, cats: leaves - 1, int, True),
    "left_child": (lambda leaves, cats: leaves - 1, int, True),
    "right_child": (lambda leaves, cats: leaves - 1, int, True),
    "split_gain": (lambda leaves, cats: leaves - 1, float, False),
    "internal_value": (lambda leaves, cats: leaves - 1, float, False),
    "internal_weight": (lambda leaves, cats: leaves - 1, float, False),
    "internal_count": (lambda leaves, cats: leaves - 1, int, False),
    "leaf_weight": (lambda leaves, cats: leaves, float, False),
    "leaf_count": (lambda leaves, cats: leaves, int, False),
    "cat_boundaries": (lambda leaves, cats: cats + 1, int, None),  # None: required when num_cat > 0
}


@dataclass(frozen=True)
class ModelText:
    """What ``check_model_text`` read from a model file."""

    text: str
    feature_names: tuple[str, ...]
    num_trees: int
    num_tree_per_iteration: int
    objective: str

    @property
    def iterations(self) -> int:
        return self.num_trees // self.num_tree_per_iteration


def _numbers(value: str, kind: type, what: str, error) -> list:
    """Space-separated numbers in the exact syntax LightGBM writes (Python's own parsers accept more, e.g. ``1_0``,
    which LightGBM would read differently)."""
    if not value:
        return []
    tokens = value.split(" ")
    pattern = _INT if kind is int else _FLOAT
    if not all(pattern.fullmatch(t) for t in tokens):
        raise error(f"{what} holds a value that is not {'an integer' if kind is int else 'a number'}")
    return [kind(t) for t in tokens]


def _check_tree(block: str, index: int, n_features: int, error) -> None:
    """One ``Tree=index`` block (its text up to the next tree), as ``Tree::Tree(const char*)`` reads it."""
    lines = block.split("\n")
    if lines[0] != f"Tree={index}":
        raise error(f"expected 'Tree={index}' where tree_sizes puts tree {index}, found {lines[0][:40]!r} "
                    "(truncated, or tree_sizes does not match the trees)")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            break
        if "=" not in line:
            raise error(f"tree {index}: line {line[:40]!r} is not key=value")
        key, value = line.split("=", 1)
        fields[key] = value
    if len(fields) > _MAX_LINES_PER_TREE:
        raise error(f"tree {index} has {len(fields)} fields, more than LightGBM reads")
    for key in ("num_leaves", "num_cat"):
        if not _INT.fullmatch(fields.get(key, "")) or fields[key].startswith("-"):
            raise error(f"tree {index}: {key} is missing or not a non-negative integer")
    if fields.get("is_linear", "0") != "0":
        raise error(f"tree {index} is a linear tree (is_linear={fields['is_linear'][:10]!r}): adsim's reward models "
                    "are plain trees")
    if "shrinkage" in fields:
        _numbers(fields["shrinkage"], float, f"tree {index}: shrinkage", error)
    leaves, cats = int(fields["num_leaves"]), int(fields["num_cat"])
    if leaves < 1:
        raise error(f"tree {index}: num_leaves must be >= 1")
    arrays = {}
    for name, (length, kind, required) in _TREE_ARRAYS.items():
        needed = length(leaves, cats)
        if name != "leaf_value" and leaves == 1:
            continue
        if required is None and cats == 0:
            continue
        if name not in fields:
            if required is False:
                continue
            raise error(f"tree {index}: {name} is missing")
        values = _numbers(fields[name], kind, f"tree {index}: {name}", error)
        if len(values) != needed:
            raise error(f"tree {index}: {name} has {len(values)} values, num_leaves={leaves} needs {needed}")
        arrays[name] = values
    if not all(math.isfinite(v) for v in arrays["leaf_value"]):
        raise error(f"tree {index}: leaf_value has NaN or infinite values")
    if leaves == 1:
        return
    if any(not 0 <= f < n_features for f in arrays["split_feature"]):
        raise error(f"tree {index}: split_feature outside 0..{n_features - 1}")
    if any(math.isnan(t) for t in arrays["threshold"]):
        raise error(f"tree {index}: threshold has NaN")
    nodes = leaves - 1
    seen_nodes, seen_leaves, stack = [0] * nodes, [0] * leaves, [0]
    while stack:
        node = stack.pop()
        seen_nodes[node] += 1
        if seen_nodes[node] > 1:
            raise error(f"tree {index}: node {node} is reached twice (not a tree)")
        for child in (arrays["left_child"][node], arrays["right_child"][node]):
            if child >= 0:
                if not node < child < nodes:
                    raise error(f"tree {index}: child {child} of node {node} is outside {node + 1}..{nodes - 1}")
                stack.append(child)
            elif -child - 1 < leaves:
                seen_leaves[-child - 1] += 1
            else:
                raise error(f"tree {index}: leaf {-child - 1} of node {node} is outside 0..{leaves - 1}")
    if min(seen_nodes) != 1 or seen_leaves.count(1) != leaves:
        raise error(f"tree {index}: left_child/right_child do not form one tree over {nodes} nodes and {leaves} "
                    "leaves")
    categorical = [node for node, d in enumerate(arrays["decision_type"]) if d & 1]
    if any(not 0 <= d < 16 for d in arrays["decision_type"]):
        raise error(f"tree {index}: decision_type outside 0..15")
    if categorical and cats == 0:
        raise error(f"tree {index}: categorical splits but num_cat=0")
    if cats:
        bounds = arrays["cat_boundaries"]
        if bounds[0] != 0 or any(b > a for a, b in zip(bounds[1:], bounds[:-1], strict=True)):
            raise error(f"tree {index}: cat_boundaries must start at 0 and never decrease")
        thresholds = _numbers(fields.get("cat_threshold", ""), int, f"tree {index}: cat_threshold", error)
        if len(thresholds) != bounds[-1] or any(not 0 <= t < 2 ** 32 for t in thresholds):
            raise error(f"tree {index}: cat_threshold must hold {bounds[-1]} unsigned 32-bit values")
        for node in categorical:
            t = arrays["threshold"][node]
            if not math.isfinite(t) or t != int(t) or not 0 <= t < cats:
                raise error(f"tree {index}: categorical split {node} names cat set {t}, outside 0..{cats - 1}")


def _check_tail(tail: str, n_trees: int, error) -> None:
    """What follows the trees, line by line, in the order LightGBM writes it: ``end of trees``, the feature
    importances (``name=count``), the parameters (``[key: value]``) up to ``end of parameters``, and optionally
    ``pandas_categorical:<JSON>``. LightGBM parses the parameters with no bounds checks (a stray line there crashes
    it), so nothing else is allowed."""
    lines = tail.split("\n")
    if lines[0] != "end of trees":
        raise error(f"'end of trees' does not follow the {n_trees} trees tree_sizes lists")
    section, pandas = "trees", False
    for line in lines[1:]:
        if not line:
            continue
        if pandas:
            raise error("text after pandas_categorical")
        if section == "trees" and line == "feature_importances:":
            section = "importances"
        elif section in ("trees", "importances") and line == "parameters:":
            section = "parameters"
        elif section == "importances" and _IMPORTANCE.fullmatch(line):
            pass
        elif section == "parameters" and _PARAMETER.fullmatch(line):
            pass
        elif section == "parameters" and line == "end of parameters":
            section = "end"
        elif section == "end" and line.startswith("pandas_categorical:"):
            try:
                json.loads(line[len("pandas_categorical:"):])
            except ValueError:
                raise error("pandas_categorical is not JSON") from None
            pandas = True
        else:
            raise error(f"unexpected line {line[:40]!r} in the {section} section after the trees")
    if section != "end":
        raise error("the parameters section is missing or cut (truncated)")


def check_model_text(data: bytes, file: str) -> ModelText:
    """The checked text of a LightGBM model file, or an ``AdSimDataError`` naming ``file`` (see the module
    docstring for what is checked)."""

    def error(message: str) -> AdSimDataError:
        return AdSimDataError(f"not a complete LightGBM model: {message}", file=file)

    if b"\0" in data:
        raise error("binary data (NUL bytes) in a text model")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"not UTF-8 text (byte {e.start})") from None
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if not text.startswith("tree\n"):
        raise error("the first line must be 'tree' (a gradient-boosted tree model)")
    first_tree = text.find("\nTree=")
    if first_tree < 0:
        raise error("no 'Tree=' block (truncated?)")
    header: dict[str, str] = {}
    for line in text[5:first_tree].split("\n"):
        if not line:
            continue
        if "=" not in line:
            header[line] = ""
            continue
        key, value = line.split("=", 1)
        if "=" in value and key not in ("feature_names", "monotone_constraints"):
            raise error(f"header line {line[:40]!r} has more than one '='")
        header[key] = value
    for key in _HEADER_INTS:
        if not _INT.fullmatch(header.get(key, "")) or header[key].startswith("-"):
            raise error(f"header field {key} is missing or not a non-negative integer")
    n_features = int(header["max_feature_idx"]) + 1
    per_iteration = int(header["num_tree_per_iteration"])
    if int(header["num_class"]) != 1 or per_iteration != 1:
        raise error("a reward model is a binary classifier: num_class and num_tree_per_iteration must be 1")
    objective = header.get("objective", "")
    if not objective.startswith("binary"):
        raise error(f"objective {objective!r} is not binary")
    for key in ("feature_names", "feature_infos"):
        values = header.get(key, "").split(" ")
        if key not in header or len(values) != n_features or not all(values):
            raise error(f"{key} must list {n_features} entries (max_feature_idx + 1)")
    if "tree_sizes" not in header:
        raise error("tree_sizes is missing")
    sizes = _numbers(header["tree_sizes"], int, "tree_sizes", error)
    if not sizes or any(s <= 0 for s in sizes):
        raise error("tree_sizes must list one positive size per tree")
    if len(sizes) % per_iteration:
        raise error("the number of trees is not a multiple of num_tree_per_iteration")
    raw = text.encode()  # tree_sizes count bytes
    start = raw.find(b"\nTree=") + 1
    if start + sum(sizes) > len(raw):
        raise error(f"tree_sizes add up to {sum(sizes)} bytes but only {len(raw) - start} follow the header "
                    "(truncated)")
    offset = start
    for index, size in enumerate(sizes):
        try:
            block = raw[offset:offset + size].decode()
        except UnicodeDecodeError:
            raise error(f"tree {index} does not start where tree_sizes says") from None
        _check_tree(block, index, n_features, error)
        offset += size
    if text.count("\nTree=") != len(sizes):
        raise error(f"tree_sizes lists {len(sizes)} trees but the file has {text.count(chr(10) + 'Tree=')}")
    _check_tail(raw[offset:].decode(), len(sizes), error)
    return ModelText(text, tuple(header["feature_names"].split(" ")), len(sizes), per_iteration, objective)


def read_model_text(path: Path) -> ModelText:
    """``check_model_text`` of the file at ``path``."""
    if not path.is_file():
        raise AdSimDataError("reward model file is missing", file=str(path))
    try:
        data = path.read_bytes()
    except OSError as e:
        raise AdSimDataError(f"cannot read the model: {e.strerror or e}", file=str(path)) from None
    return check_model_text(data, str(path))


def booster_from_text(model: ModelText, file: str):
    """A ``lgb.Booster`` of checked text (loaded from the string: what was checked is what LightGBM reads)."""
    import lightgbm as lgb

    try:
        return lgb.Booster(model_str=model.text)
    except (lgb.basic.LightGBMError, ValueError) as e:
        raise AdSimDataError(f"LightGBM cannot load the model: {e}", file=file) from None


def read_json(path: Path, what: str) -> dict:
    """A JSON object file, or an ``AdSimDataError`` naming it (missing, not UTF-8, not JSON, not an object)."""
    if not path.is_file():
        raise AdSimDataError(f"{what} is missing", file=str(path))
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise AdSimDataError(f"{what} is not valid JSON: {e}", file=str(path)) from None
    if not isinstance(data, dict):
        raise AdSimDataError(f"{what} must be a JSON object, got a JSON {type(data).__name__}", file=str(path))
    return data


def check_meta(meta: dict, file: str, format_version: int) -> None:
    """The fields of a model's ``meta.json`` that loading uses, with their types."""
    def error(key: str, message: str) -> AdSimDataError:
        return AdSimDataError(message, file=file, column=key)

    if meta.get("format_version") != format_version:
        raise error("format_version", f"unsupported reward model format {meta.get('format_version')!r}")
    features = meta.get("features")
    if (not isinstance(features, list) or not features
            or not all(isinstance(f, dict) and isinstance(f.get("name"), str) for f in features)):
        raise error("features", "features must be a non-empty list of {name, categorical, nullable} objects")
    label = meta.get("label")
    if not isinstance(label, dict) or not all(isinstance(label.get(k), str) for k in ("name", "rows", "definition")):
        raise error("label", "label must be an object with name, rows and definition")
    if not isinstance(meta.get("config"), dict) or not isinstance(meta["config"].get("params", {}), dict):
        raise error("config", "config must be an object with a params object")
    for key in ("n_train", "n_positive", "n_valid", "best_iteration"):
        value = meta.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise error(key, f"{key} must be a non-negative integer, got {value!r}")
    if not isinstance(meta.get("train_checksum"), str):
        raise error("train_checksum", "train_checksum must be a string")


# ---------------------------------------------------------------------------------------------- bundles
LABELS = {"pctr": ("click", ("impressions",)), "pcvr": ("conversion", ("clicked impressions", "impressions"))}
"""What each model of a bundle must predict: (label name, allowed label rows)."""


def check_bundle_models(directory: Path, manifest_entry: dict | None, n_ads: int, probe: bool = False) -> None:
    """A bundle's ``reward_models/`` checked without trusting any file (see the module docstring).

    Args:
        directory: the bundle's ``reward_models`` directory.
        manifest_entry: the manifest's ``reward_models`` entry (what the build step recorded), if any.
        n_ads: the bundle's ads (rows of the SID codes the features use).
        probe: also load and run both models in a child process (``adsim validate``).
    """
    scorer_file = directory / SCORER_FILE
    scorer = read_json(scorer_file, "scorer.json")
    names = scorer.get("feature_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise AdSimDataError("feature_names must be a non-empty list of names", file=str(scorer_file),
                             column="feature_names")
    cvr_target = scorer.get("cvr_target")
    if cvr_target not in ("cvr", "ctcvr"):
        raise AdSimDataError(f"cvr_target must be 'cvr' or 'ctcvr', got {cvr_target!r}", file=str(scorer_file),
                             column="cvr_target")
    levels = scorer.get("sid_levels")
    if not isinstance(levels, int) or isinstance(levels, bool) or levels < 0:
        raise AdSimDataError(f"sid_levels must be a non-negative integer, got {levels!r}", file=str(scorer_file),
                             column="sid_levels")
    for key in ("features", "value"):
        if not isinstance(scorer.get(key), dict):
            raise AdSimDataError(f"{key} must be an object", file=str(scorer_file), column=key)
    if levels:
        codes = load_array(directory / SID_FILE, mmap=False)
        if codes.shape != (n_ads, levels) or codes.dtype.kind not in "iu" or (codes < 0).any():
            raise AdSimDataError(f"SID codes must be ({n_ads} ads, {levels} levels) non-negative integers, got "
                                 f"{codes.dtype} {codes.shape}", file=str(directory / SID_FILE))
    entry = manifest_entry if isinstance(manifest_entry, dict) else {}
    for name, (label, rows) in LABELS.items():
        model_file, meta_file = directory / name / MODEL_FILE, directory / name / META_FILE
        meta = read_json(meta_file, "meta.json")
        check_meta(meta, str(meta_file), FORMAT_VERSION)
        model = read_model_text(model_file)
        meta_names = [f["name"] for f in meta["features"]]
        if list(model.feature_names) != meta_names:
            raise AdSimDataError("model.txt and meta.json list different features", file=str(model_file))
        if meta_names != names:
            raise AdSimDataError(f"the {name} model's features differ from scorer.json's feature_names",
                                 file=str(meta_file), column="features")
        if meta["label"]["name"] != label or meta["label"]["rows"] not in rows:
            raise AdSimDataError(f"the {name} model predicts {meta['label']['name']!r} on "
                                 f"{meta['label']['rows']!r}, not {label!r}: the wrong model is in {name}/",
                                 file=str(meta_file), column="label")
        expected_rows = "clicked impressions" if name == "pcvr" and cvr_target == "cvr" else "impressions"
        if meta["label"]["rows"] != expected_rows:
            raise AdSimDataError(f"the {name} model was trained on {meta['label']['rows']} but scorer.json's "
                                 f"cvr_target {cvr_target!r} needs {expected_rows}", file=str(meta_file),
                                 column="label")
        if model.iterations != meta["best_iteration"]:
            raise AdSimDataError(f"model.txt holds {model.iterations} iterations, meta.json's best_iteration says "
                                 f"{meta['best_iteration']}", file=str(model_file))
        recorded = entry.get(name) if isinstance(entry.get(name), dict) else {}
        for key in ("n_train", "best_iteration", "train_checksum"):
            if key in recorded and recorded[key] != meta.get(key):
                raise AdSimDataError(f"the manifest records {key}={recorded[key]!r} for {name}, the model's meta.json "
                                     f"says {meta.get(key)!r}: not the model this bundle was built with",
                                     file=str(meta_file), column=key)
        if "label" in recorded and recorded["label"] != meta["label"]["name"]:
            raise AdSimDataError(f"the manifest records label {recorded['label']!r} for {name}", file=str(meta_file),
                                 column="label")
    if probe:
        probe_models(directory, len(names))


_PROBE = """
import sys
import numpy as np
import lightgbm as lgb
for path in sys.argv[2:]:
    booster = lgb.Booster(model_str=open(path).read())
    booster.predict(np.zeros((4, int(sys.argv[1])), dtype=np.float32), num_threads=1)
"""


def probe_models(directory: Path, n_features: int, timeout: float = 120.0) -> None:
    """Load and run ``pctr`` and ``pcvr`` in a child process: an abort or crash there is an error here."""
    paths = [str(directory / name / MODEL_FILE) for name in LABELS]
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE, str(n_features), *paths], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AdSimDataError(f"loading the models in a child process did not finish in {timeout:.0f} s",
                             file=str(directory)) from None
    if done.returncode != 0:
        how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit status {done.returncode}"
        last = done.stderr.strip().splitlines()[-1:] or [""]
        raise AdSimDataError(f"LightGBM failed on the models in a child process ({how}): {last[0][:200]}",
                             file=str(directory))
