"""Reward-model and SID files broken one way each: an AdSimDataError naming the file, never a LightGBM abort (the
truncations below killed the interpreter with SIGABRT/SIGSEGV before the format check), a raw JSON or zip error, or
the wrong model accepted; nothing on disk changed."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest
from reliability_support import _bundle_copy, _full_bundle, refused, resign  # noqa: F401  (fixtures)

from adsim import Scenario
from adsim.errors import AdSimDataError
from adsim.sid.pipeline import bundle_sids
from reward_models.lightgbm_model import LightGBMRewardModel
from reward_models.model_files import check_bundle_models
from reward_models.scorer import RewardScorer


def _model(bundle, name="pctr"):
    return bundle / "reward_models" / name / "model.txt"


def _rewrite(name, edit):
    """Apply ``edit`` (text -> text) to ``name``'s model.txt."""
    def corrupt(bundle):
        path = _model(bundle, name)
        path.write_text(edit(path.read_text()))

    return corrupt


def _cut(fraction):
    def corrupt(bundle):
        path = _model(bundle)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])

    return corrupt


def _cut_at(marker):
    return _rewrite("pctr", lambda text: text[: text.index(marker)])


def _tree_size_off(text):
    sizes = re.search(r"tree_sizes=(.*)", text).group(1).split(" ")
    sizes[3] = str(int(sizes[3]) + 7)
    return re.sub(r"tree_sizes=.*", "tree_sizes=" + " ".join(sizes), text, count=1)


def _drop_tree(text):
    start = text.index("Tree=2\n")
    return text[:start] + text[text.index("Tree=3\n"):]


def _first_tree_field(field, value):
    def edit(text):
        start = text.index("Tree=0\n")
        line = re.compile(rf"^{field}=.*$", re.M).search(text, start)
        return text[: line.start()] + f"{field}={value(line.group(0).split('=', 1)[1])}" + text[line.end():]

    return edit


def _stray_parameter_line(text):
    """An importance line swapped into the parameters section: LightGBM's parser segfaulted on this one."""
    return text.replace("[num_gpu: 1]", "organic_cos_max=4")


MODEL_CASES = {
    "truncated 5%": (_cut(0.05), "not a complete LightGBM model"),
    "truncated 50%": (_cut(0.5), "truncated"),
    "truncated 99.9%": (_cut(0.999), "not a complete LightGBM model"),
    "header only": (_cut_at("Tree=0\n"), "no 'Tree=' block"),
    "no end of trees": (_cut_at("end of trees"), "not a complete LightGBM model"),
    "tree_sizes off": (_rewrite("pctr", _tree_size_off), "tree_sizes"),
    "a tree missing": (_rewrite("pctr", _drop_tree), "not a complete LightGBM model"),
    "feature_names short": (_rewrite("pctr", lambda t: re.sub(r"(feature_names=\S+) \S+", r"\1", t, count=1)),
                            "feature_names must list"),
    "split feature out of range": (_rewrite("pctr", _first_tree_field("split_feature",
                                                                       lambda v: "999 " + v.split(" ", 1)[1])),
                                   "split_feature outside"),
    "children loop": (_rewrite("pctr", _first_tree_field("left_child", lambda v: "0 " + v.split(" ", 1)[1])),
                      "tree 0"),
    "leaf value NaN": (_rewrite("pctr", _first_tree_field("leaf_value", lambda v: "nan " + v.split(" ", 1)[1])),
                       "leaf_value has NaN"),
    "array too short": (_rewrite("pctr", _first_tree_field("threshold", lambda v: v.rsplit(" ", 1)[0])),
                        "threshold has"),
    "Python-only number syntax": (_rewrite("pctr", _first_tree_field("left_child",
                                                                      lambda v: "1_0 " + v.split(" ", 1)[1])),
                                  "not an integer"),
    "stray parameter line": (_rewrite("pctr", _stray_parameter_line), "unexpected line"),
    "random bytes": (lambda b: _model(b).write_bytes(os.urandom(4096)), "not a complete LightGBM model"),
    "empty": (lambda b: _model(b).write_bytes(b""), "first line must be 'tree'"),
    "NUL bytes": (lambda b: _model(b).write_bytes(_model(b).read_bytes().replace(b"Tree=5", b"\0\0\0\0\0\0")),
                  "NUL bytes"),
}


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_broken_model_text_is_refused_before_lightgbm_parses_it(bundle_copy, case):
    corrupt, needle = MODEL_CASES[case]
    corrupt(bundle_copy)
    with refused(bundle_copy, AdSimDataError, "pctr/model.txt", needle):
        LightGBMRewardModel.load(bundle_copy / "reward_models" / "pctr")


def _json_file(rel, text):
    def corrupt(bundle):
        (bundle / rel).write_text(text)

    return corrupt


def _meta(name, change):
    def corrupt(bundle):
        path = bundle / "reward_models" / name / "meta.json"
        meta = json.loads(path.read_text())
        change(meta)
        path.write_text(json.dumps(meta))

    return corrupt


def _pcvr_over_pctr(bundle):
    models = bundle / "reward_models"
    shutil.rmtree(models / "pctr")
    shutil.copytree(models / "pcvr", models / "pctr")


def _manifest_rows(bundle):
    resign(bundle, lambda m: m["reward_models"]["pctr"].__setitem__("n_train", 17))


def _manifest_training_data(bundle):
    resign(bundle, lambda m: m["reward_models"]["pcvr"].__setitem__("train_checksum", "0" * 64))


def _sid_codes_shape(bundle):
    path = bundle / "reward_models" / "sid_codes.npy"
    np.save(path, np.load(path)[:-3])


BUNDLE_MODEL_CASES = {  # name: (corrupt, file named, needle)
    "pcvr copied over pctr": (_pcvr_over_pctr, "pctr/meta.json", "the wrong model is in pctr/"),
    "scorer.json garbled": (_json_file("reward_models/scorer.json", '{"format_version": 1, "cvr'), "scorer.json",
                            "not valid JSON"),
    "scorer.json a list": (_json_file("reward_models/scorer.json", "[]"), "scorer.json", "JSON list"),
    "scorer.json bad target": (_json_file("reward_models/scorer.json", json.dumps(
        {"feature_names": ["a"], "cvr_target": "ctr", "sid_levels": 0, "features": {}, "value": {}})),
        "scorer.json", "cvr_target"),
    "meta.json garbled": (_json_file("reward_models/pcvr/meta.json", "{"), "pcvr/meta.json", "not valid JSON"),
    "meta.json no label": (_meta("pcvr", lambda m: m.pop("label")), "pcvr/meta.json", "label must be an object"),
    "meta.json other features": (_meta("pctr", lambda m: m["features"].reverse()), "pctr/model.txt",
                                 "different features"),
    "manifest's training rows differ": (_manifest_rows, "pctr/meta.json", "not the model this bundle was built"),
    "trained on other data": (_manifest_training_data, "pcvr/meta.json", "not the model this bundle was built"),
    "SID codes of other ads": (_sid_codes_shape, "sid_codes.npy", "SID codes must be"),
    "SID codes missing": (lambda b: (b / "reward_models" / "sid_codes.npy").unlink(), "sid_codes.npy",
                          "missing"),
}


@pytest.mark.parametrize("case", list(BUNDLE_MODEL_CASES))
def test_wrong_or_garbled_reward_model_files_are_refused(bundle_copy, case):
    corrupt, file, needle = BUNDLE_MODEL_CASES[case]
    corrupt(bundle_copy)
    scenario = Scenario(bundle_copy, validate=False)
    with refused(bundle_copy, AdSimDataError, file, needle):
        check_bundle_models(bundle_copy / "reward_models", scenario.manifest.get("reward_models"),
                            len(scenario.table("ads")))


def test_loading_the_scorer_refuses_a_truncated_model_without_aborting(bundle_copy):
    _cut(0.5)(bundle_copy)
    resign(bundle_copy)  # checksums agree: only the format check stands between the file and LightGBM
    scenario = Scenario(bundle_copy)
    with refused(bundle_copy, AdSimDataError, "pctr/model.txt", "truncated"):
        RewardScorer.load(bundle_copy, scenario)


def _npz_cut(rel):
    def corrupt(bundle):
        path = bundle / rel
        path.write_bytes(path.read_bytes()[:200])

    return corrupt


SID_CASES = {
    "artifact arrays truncated": (_npz_cut("sid/arrays.npz"), "sid/arrays.npz", "not a readable .npz"),
    "path index truncated": (_npz_cut("sid/ad_index.npz"), "sid/ad_index.npz", "not a readable .npz"),
    "tokenizer arrays truncated": (_npz_cut("sid/tokenizer/arrays.npz"), "tokenizer/arrays.npz", "not a readable"),
    "meta.json garbled": (_json_file("sid/meta.json", "{\"format\": \"adsim.sid\""), "sid/meta.json",
                          "not valid JSON"),
    "meta.json a string": (_json_file("sid/meta.json", '"sid"'), "sid/meta.json", "JSON str"),
    "manifest's codebooks differ": (lambda b: resign(b, lambda m: m["sid"].__setitem__("codebook_sizes", [9, 9, 9])),
                                    "sid", "not the SIDs this bundle was built with"),
}


@pytest.mark.parametrize("case", list(SID_CASES))
def test_broken_sid_files_are_refused(bundle_copy, case):
    corrupt, file, needle = SID_CASES[case]
    corrupt(bundle_copy)
    scenario = Scenario(bundle_copy, validate=False)
    with refused(bundle_copy, AdSimDataError, file, needle):
        bundle_sids(scenario)


def test_sid_codes_that_do_not_fit_the_bundle_are_refused(bundle_copy):
    from adsim.sid.base import read_state, write_state

    config, state, arrays = read_state(bundle_copy / "sid", kind="sid_artifacts")
    arrays["ad_codes"] = arrays["ad_codes"][:-1]
    write_state(bundle_copy / "sid", kind="sid_artifacts", config=config, state=state, arrays=arrays)
    resign(bundle_copy)
    with refused(bundle_copy, AdSimDataError, "ad_codes", "must be (400, L)"):
        bundle_sids(Scenario(bundle_copy))
