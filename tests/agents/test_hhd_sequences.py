"""Token sequences: time order, framing (U first, E last), truncation to the newest events, no future leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fixtures.real_formats import AMAZON

from agents.hhd.sequences import (
    ENV_FEATURES,
    AmazonSequences,
    ScenarioSequences,
    SequenceConfig,
    next_targets,
    pack_tokens,
    scenario_sids,
)
from envs.observation import TOKEN_E, TOKEN_I, TOKEN_O, TOKEN_PAD, TOKEN_U
from reward_models.pipeline import ensure_scenario


def test_pack_tokens_known_answer():
    L = 2
    o_codes = np.array([[[1, 1], [2, 2], [0, 0]]])
    o_age, o_valid = np.array([[50.0, 10.0, 0.0]]), np.array([[True, True, False]])
    i_codes = np.array([[[7, 7], [8, 8]]])
    i_action, i_age, i_valid = np.array([[2, 3]]), np.array([[30.0, 5.0]]), np.array([[True, True]])
    out = pack_tokens(SequenceConfig(max_len=8), (o_codes, o_age, o_valid), (i_codes, i_action, i_age, i_valid))
    # 4 events, oldest first: O(50) I(30) O(10) I(5); left padding; U before them, E last
    np.testing.assert_array_equal(out["token_type"][0], [TOKEN_PAD, TOKEN_PAD, TOKEN_U, TOKEN_O, TOKEN_I, TOKEN_O,
                                                         TOKEN_I, TOKEN_E])
    np.testing.assert_array_equal(out["codes"][0, :, 0], [-1, -1, -1, 1, 7, 2, 8, -1])
    np.testing.assert_array_equal(out["action"][0], [0, 0, 0, 0, 2, 0, 3, 0])
    np.testing.assert_allclose(out["age"][0], [0, 0, 0, 50, 30, 10, 5, 0])
    assert out["codes"].shape == (1, 8, L)
    # too little room: the newest events stay
    short = pack_tokens(SequenceConfig(max_len=4), (o_codes, o_age, o_valid), (i_codes, i_action, i_age, i_valid))
    np.testing.assert_array_equal(short["token_type"][0], [TOKEN_U, TOKEN_O, TOKEN_I, TOKEN_E])
    np.testing.assert_allclose(short["age"][0], [0, 10, 5, 0])


def test_next_targets_stay_within_user_and_split():
    user = np.array([0, 0, 0, 1, 1])
    split = np.array(["train", "train", "test", "train", "train"])
    np.testing.assert_array_equal(next_targets(user, split, 3),
                                  [[0, 1, -1], [1, -1, -1], [2, -1, -1], [3, 4, -1], [4, -1, -1]])


@pytest.fixture(scope="module")
def tiny():
    scenario = ensure_scenario("tiny", seed=0, progress=False)
    return scenario, ScenarioSequences(scenario, scenario_sids(scenario), SequenceConfig(max_len=16))


def test_scenario_batches_are_well_formed(tiny):
    scenario, seqs = tiny
    idx = np.random.default_rng(0).choice(seqs.n_samples, 200, replace=False)
    b = seqs.batch(idx)
    T, L = 16, seqs.item_codes.shape[1]
    assert b.token_type.shape == (200, T) and b.codes.shape == (200, T, L)
    assert (b.token_type[:, -1] == TOKEN_E).all() and ((b.token_type == TOKEN_U).sum(1) == 1).all()
    valid = b.token_type != TOKEN_PAD
    assert (np.diff(valid.astype(int), axis=1) >= 0).all()  # padding only on the left
    events = (b.token_type == TOKEN_O) | (b.token_type == TOKEN_I)
    assert (b.age[events] > 0).all()  # strictly before the request
    assert all((np.diff(age[ev]) <= 0).all() for age, ev in zip(b.age, events, strict=True))  # oldest first
    assert (b.action[b.token_type == TOKEN_I] >= 1).all() and (b.action[b.token_type != TOKEN_I] == 0).all()
    assert (b.codes[~events] == -1).all() and (b.codes[b.token_type == TOKEN_I] >= 0).all()
    # head 0's target is the sample's own impression
    np.testing.assert_array_equal(b.target_codes[:, 0], seqs.item_codes[seqs.samples["ad_id"][idx]])
    assert b.target_mask[:, 0].all()
    later = b.target_index[b.target_mask]
    assert (seqs.samples["ts"][later] >= np.repeat(seqs.samples["ts"][idx], b.target_mask.sum(1))).all()
    assert len(b.user_feats[0]) == len(seqs.user_vocab) and (b.env_feats < np.array(seqs.env_vocab)).all()


def test_amazon_sequences(data_root):
    seqs = AmazonSequences(data_root / AMAZON)
    for split in ("valid", "test"):  # one sample per window of the split's file
        assert len(seqs.indices(split)) == len(pd.read_csv(data_root / AMAZON / f"{split}.csv"))
    idx = seqs.indices("test")[:50]
    b = seqs.batch(idx)
    items = b.token_type == TOKEN_I
    np.testing.assert_array_equal(items.sum(1), (seqs.history[idx] >= 0).sum(1))
    # the newest history item sits just before E, and every I-token carries that item's SID
    last = seqs.history[idx, (seqs.history[idx] >= 0).sum(1) - 1]
    np.testing.assert_array_equal(b.codes[:, -2], seqs.item_codes[last])


def test_request_batch_matches_the_logged_sample(tiny):
    _, seqs = tiny
    idx = seqs.indices("test")[:20]
    logged = seqs.batch(idx)
    env = np.stack([seqs.samples[c][idx] for c in ENV_FEATURES], axis=1)
    fresh = seqs.request_batch(seqs.samples["user_id"][idx], seqs.samples["ts"][idx], env)
    for name in ("token_type", "codes", "action", "age", "user_feats", "env_feats"):
        np.testing.assert_array_equal(getattr(fresh, name), getattr(logged, name))
    assert fresh.target_codes.shape == (20, 0, seqs.item_codes.shape[1])
