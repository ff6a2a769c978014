"""Decoding: trie-constrained beam search is exact against brute force on a tiny trie and only emits legal paths;
sampling records behaviour log-probs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from adsim.trie import SidTrie
from agents.hhd.decoding import (
    BeamConfig,
    TorchTrie,
    beam_search,
    path_legal_masks,
    sample,
    trie_legal,
    valid_paths,
)
from agents.hhd.model import HHD
from agents.hhd.testing import (
    one_torch_thread,  # noqa: F401  (autouse fixture)
    random_batch,
    random_codes,
    tiny_config,
)


def setup(seed: int, n_items: int = 12, n_requests: int = 3, **overrides):
    config = tiny_config(**overrides)
    codes = random_codes(config.codebook_sizes, n_items, seed)
    trie = SidTrie(codes, config.codebook_sizes)
    torch.manual_seed(seed)
    model = HHD(config).eval()
    with torch.no_grad():
        model.head_logits.copy_(torch.randn(config.mtp_heads))
    batch = random_batch(config, n_requests, codes, seed).to("cpu")
    allowed = np.random.default_rng(seed).random((n_requests, n_items)) < 0.6
    allowed[:, 0] = True  # every request can receive something
    return model, batch, trie, allowed, codes


def brute_force(model, batch, trie, allowed, b):
    """Every allowed path of request b with its policy log-prob, best first."""
    legal_items = np.flatnonzero(allowed[b])
    paths = np.unique(trie.sorted_codes[np.isin(trie.order, legal_items)], axis=0)
    sub = batch.take(np.full(len(paths), b))
    legal = trie_legal(trie, np.repeat(allowed[b:b + 1], len(paths), axis=0))
    out = model.get_action_and_value(sub, paths=torch.as_tensor(paths), legal=legal)
    total = out.log_probs.sum(dim=1).detach().numpy()
    order = np.argsort(-total, kind="stable")
    return paths[order], total[order]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 40), sizes=st.lists(st.integers(2, 5), min_size=1, max_size=3))
def test_torch_trie_masks_match_the_numpy_reference(seed, n, sizes):
    rng = np.random.default_rng(seed)
    trie = SidTrie(random_codes(tuple(sizes), n, seed), sizes)
    allowed = rng.random((4, n)) < 0.5
    sums, fast = trie.allowed_prefix_sums(allowed), TorchTrie(trie)
    for d in range(len(sizes)):
        prefixes = np.stack([rng.integers(-1, s + 1, size=(4, 3)) for s in sizes[:d]] + [np.zeros((4, 3), int)],
                            axis=-1)[..., :d]  # out-of-range codes included
        expected = trie.legal_mask(prefixes, sums[:, None])
        got = fast.legal_mask(torch.as_tensor(prefixes), fast.prefix_sums(allowed))
        np.testing.assert_array_equal(got.numpy(), expected)
        everything = fast.legal(None)(torch.as_tensor(prefixes))
        np.testing.assert_array_equal(everything.numpy(), trie.legal_mask(prefixes, trie.allowed_prefix_sums(
            np.ones((1, 1, n), bool))))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), heads=st.sampled_from([1, 3]))
def test_beam_search_matches_brute_force(seed, heads):
    model, batch, trie, allowed, _ = setup(seed, mtp_heads=heads)
    beam = 3 * 4 * 5  # wider than any level: beam search is exact
    result = beam_search(model, batch, trie_legal(trie, allowed), BeamConfig(beam=beam))
    for b in range(len(allowed)):
        paths, scores = brute_force(model, batch, trie, allowed, b)
        n = len(paths)
        assert result.found[b, :n].all() and not result.found[b, n:].any()
        np.testing.assert_allclose(result.scores[b, :n], scores, atol=1e-5)
        np.testing.assert_allclose(result.log_probs[b, :n].sum(-1), scores, atol=1e-5)
        # same paths, up to the order of exact ties
        assert {tuple(p) for p in result.paths[b, :n]} == {tuple(p) for p in paths}


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), beam=st.integers(1, 8), guided=st.booleans(), fuse=st.sampled_from([0.0, 1.0]))
def test_constrained_beam_search_emits_only_valid_paths(seed, beam, guided, fuse):
    model, batch, trie, allowed, _ = setup(seed, n_items=30)
    config = BeamConfig(beam=beam, value_guided=guided, fuse_value=fuse)
    result = beam_search(model, batch, trie_legal(trie, allowed), config)
    assert result.paths.shape == (len(allowed), beam, 3)
    assert valid_paths(trie, result.paths, allowed)[result.found].all()
    assert (result.paths[~result.found] == -1).all()
    # best first, no path twice
    assert (np.diff(np.where(result.found, result.scores, -np.inf), axis=1) <= 1e-6).all()
    for b in range(len(allowed)):
        found = result.paths[b, result.found[b]]
        assert len(np.unique(found, axis=0)) == len(found)


def test_unconstrained_search_wastes_beam_on_invalid_paths():
    model, batch, trie, allowed, _ = setup(0, n_items=6)
    result = beam_search(model, batch, None, BeamConfig(beam=20))
    assert result.found.all()  # 60 codebook paths: the beam fills up
    assert not valid_paths(trie, result.paths, allowed).all()


def test_empty_personalised_trie_yields_no_paths():
    model, batch, trie, allowed, _ = setup(1)
    allowed[1] = False
    result = beam_search(model, batch, trie_legal(trie, allowed), BeamConfig(beam=5))
    assert not result.found[1].any() and result.found[0].any()


def test_value_decoding_needs_hte():
    model, batch, trie, allowed, _ = setup(0, hte=False)
    with pytest.raises(ValueError, match="HTE"):
        beam_search(model, batch, trie_legal(trie, allowed), BeamConfig(value_guided=True))


def test_sampling_records_behaviour_log_probs():
    model, batch, trie, allowed, _ = setup(2, n_items=30, n_requests=16)
    legal = trie_legal(trie, allowed)
    plain = sample(model, batch, legal, generator=torch.Generator().manual_seed(0))
    again = sample(model, batch, legal, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(plain.paths, again.paths)
    torch.testing.assert_close(plain.behaviour_log_probs, plain.log_probs)
    assert valid_paths(trie, plain.paths.numpy()[:, None], allowed).all()
    hot = sample(model, batch, legal, temperature=3.0, top_k=2, generator=torch.Generator().manual_seed(0))
    assert valid_paths(trie, hot.paths.numpy()[:, None], allowed).all()
    assert not torch.allclose(hot.behaviour_log_probs, hot.log_probs)
    # re-scoring the sampled paths under the recorded masks gives the policy log-probs back
    rescored = model.get_action_and_value(batch, paths=hot.paths, legal=legal)
    torch.testing.assert_close(rescored.log_probs, hot.log_probs)
    torch.testing.assert_close(rescored.legal, path_legal_masks(legal, hot.paths))
