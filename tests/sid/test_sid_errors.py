"""Bad input fails early with a message that names the problem."""

import json

import numpy as np
import pytest

from adsim.errors import AdSimDataError
from adsim.sid import (
    RQVAE,
    CommercialConfig,
    CommercialSid,
    RQKMeans,
    RQKMeansConfig,
    RQVAEConfig,
    load_tokenizer,
)
from adsim.sid.synthetic import make_synthetic_ads


@pytest.fixture(scope="module")
def synth():
    return make_synthetic_ads(n_ads=80, n_organic=1, dim=4, n_topics=3, seed=0)


def small_rqk() -> RQKMeans:
    return RQKMeans(RQKMeansConfig(codebook_sizes=(4, 3), n_iter=5))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_embeddings(bad):
    x = np.random.default_rng(0).standard_normal((20, 3))
    x[7, 1] = bad
    with pytest.raises(AdSimDataError, match=r"NaN or inf.*rows \[7\]"):
        small_rqk().fit(x)
    tok = small_rqk().fit(np.nan_to_num(x, posinf=0, neginf=0, nan=0))
    with pytest.raises(AdSimDataError, match="NaN or inf"):
        tok.encode(x)


@pytest.mark.parametrize("make", [small_rqk, lambda: RQVAE(RQVAEConfig(codebook_sizes=(4, 3), epochs=1))])
def test_fewer_items_than_codes(make):
    with pytest.raises(AdSimDataError, match="fewer than the 4 codes"):
        make().fit(np.zeros((3, 2)))


def test_dimension_mismatch_between_fit_and_encode():
    tok = small_rqk().fit(np.random.default_rng(0).standard_normal((20, 3)))
    with pytest.raises(AdSimDataError, match="4 dimensions, expected 3"):
        tok.encode(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="2-D"):
        tok.encode(np.zeros(3))


@pytest.mark.parametrize("sizes", [(1, 4), (4, 0), ()])
def test_codebook_sizes_below_two(sizes):
    with pytest.raises(ValueError, match="codebook_sizes"):
        RQKMeansConfig(codebook_sizes=sizes)
    with pytest.raises(ValueError, match="codebook_sizes"):
        RQVAEConfig(codebook_sizes=sizes)


def test_decode_rejects_out_of_range_codes():
    tok = small_rqk().fit(np.random.default_rng(0).standard_normal((20, 3)))
    with pytest.raises(ValueError, match="codes must lie"):
        tok.decode(np.array([[0, 3]]))


def test_commercial_sid_needs_its_attributes(synth):
    x, ads = synth.ad_embeddings, synth.ads
    with pytest.raises(ValueError, match="attrs is required"):
        CommercialSid(small_rqk()).fit(x)
    with pytest.raises(AdSimDataError, match="'bid'"):
        CommercialSid(small_rqk()).fit(x, ads.drop(columns="bid"))
    broken = ads.copy()
    broken.loc[3, "bid"] = -1.0
    with pytest.raises(AdSimDataError, match=r"'bid'.*rows \[3\]"):
        CommercialSid(small_rqk()).fit(x, broken)
    broken = ads.copy()
    broken.loc[5, "goal"] = None
    with pytest.raises(AdSimDataError, match=r"'goal'.*rows \[5\]"):
        CommercialSid(small_rqk()).fit(x, broken)
    with pytest.raises(AdSimDataError, match="rows but there are"):
        CommercialSid(small_rqk()).fit(x, ads.iloc[:10])
    sid = CommercialSid(small_rqk(), CommercialConfig(vocab_budget=40)).fit(x, ads)
    with pytest.raises(AdSimDataError, match="'roi_target'"):
        sid.encode(x, ads.drop(columns="roi_target"))


@pytest.fixture()
def saved(tmp_path):
    return small_rqk().fit(np.random.default_rng(0).standard_normal((20, 3))).save(tmp_path / "tok")


def test_incompatible_format_version_is_refused(saved):
    meta = json.loads((saved / "meta.json").read_text())
    meta["format_version"] = 999
    (saved / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(AdSimDataError, match="incompatible SID artifact.*version 999"):
        load_tokenizer(saved)


def test_checksum_mismatch_is_refused(saved):
    with np.load(saved / "arrays.npz") as npz:
        arrays = dict(npz)
    arrays["codebook_0"][0, 0] += 1e-9
    np.savez(saved / "arrays.npz", **arrays)
    with pytest.raises(AdSimDataError, match="checksum mismatch"):
        RQKMeans.load(saved)


def test_edited_config_is_refused(saved):
    meta = json.loads((saved / "meta.json").read_text())
    meta["config"]["codebook_sizes"] = [4, 4]
    (saved / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(AdSimDataError, match="checksum mismatch"):
        load_tokenizer(saved)


def test_loading_as_the_wrong_kind_is_refused(saved):
    with pytest.raises(AdSimDataError, match="expected 'rq_vae'"):
        RQVAE.load(saved)


def test_unfitted_tokenizer_cannot_encode_or_save(tmp_path):
    with pytest.raises(RuntimeError, match="not fitted"):
        small_rqk().encode(np.zeros((2, 3)))
    with pytest.raises(RuntimeError, match="not fitted"):
        small_rqk().save(tmp_path)
