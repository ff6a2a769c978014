"""One call for the scenario builder: fit SIDs for a scenario's ads and organic items and keep what the simulator
needs (codes and the path -> ads index).

Choices, and why:

* The semantic tokenizer is fitted on all ads plus a seeded subsample of organic items, ``max_fit_items`` in all.
  Ads and organic content share one SID space (GPR), the ads always take part because their paths are the ones the
  simulator resolves, and the cap keeps fitting time flat as the organic catalogue grows.
* Organic items have no bid, goal or industry, so they get the semantic levels only: ``organic_codes`` has
  ``L_sem`` columns and equals the first ``L_sem`` columns an ad with the same embedding would get. With
  ``commercial=False`` ads and organic items have the same ``L_sem`` levels.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd

from adsim.errors import AdSimDataError
from adsim.sid.base import (
    SemanticTokenizer,
    SidTokenizer,
    check_embeddings,
    config_from_json,
    config_to_json,
    load_tokenizer,
    read_npz,
    read_state,
    write_state,
)
from adsim.sid.commercial import CommercialConfig, CommercialSid, check_attrs
from adsim.sid.metrics import code_usage_rate, collision_rate
from adsim.sid.path_index import PathIndex
from adsim.sid.rq_kmeans import RQKMeans, RQKMeansConfig
from adsim.sid.rq_kmeans_plus import RQKMeansPlus
from adsim.sid.rq_vae import RQVAE

TOKENIZERS = ("rq_kmeans", "rq_vae", "rq_kmeans_plus")


@dataclass
class SidConfig:
    tokenizer: str = "rq_kmeans_plus"
    """Semantic tokenizer: "rq_kmeans" | "rq_vae" | "rq_kmeans_plus"."""
    semantic_codebook_sizes: tuple[int, ...] = (128, 128)
    """Codes per semantic level; ads get one more (commercial) level when ``commercial``."""
    commercial: bool = True
    """Last ad level from goal / ROI / industry / bid (UniVA Commercial SID)."""
    n_min: int = 1
    """Fewest bid bins per commercial composition key."""
    n_max: int = 32
    """Most bid bins per commercial composition key."""
    vocab_budget: int = 256
    """V: size limit of the commercial level's vocabulary."""
    seed: int = 0
    epochs: int = 15
    """Training epochs of rq_vae / rq_kmeans_plus."""
    batch_size: int = 512
    kmeans_iters: int = 25
    """Lloyd iterations per level (RQ-Kmeans, and the RQ-Kmeans+ initialisation)."""
    max_fit_items: int | None = 20_000
    """Items the semantic tokenizer is fitted on: all ads, topped up with a seeded sample of organic items up to this
    many (never fewer than the ads); None = every organic item too."""
    hidden_dims: tuple[int, ...] = (128,)
    """Encoder hidden widths of rq_vae / rq_kmeans_plus."""

    def __post_init__(self) -> None:
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {self.tokenizer!r}")
        if self.max_fit_items is not None and self.max_fit_items < 1:
            raise ValueError(f"max_fit_items must be >= 1 or None, got {self.max_fit_items}")
        self.semantic_codebook_sizes = tuple(self.semantic_codebook_sizes)
        self.hidden_dims = tuple(self.hidden_dims)

    def semantic_tokenizer(self) -> SemanticTokenizer:
        """A fresh, unfitted semantic tokenizer as configured."""
        sizes, seed = self.semantic_codebook_sizes, self.seed
        if self.tokenizer == "rq_kmeans":
            return RQKMeans(RQKMeansConfig(codebook_sizes=sizes, n_iter=self.kmeans_iters, seed=seed))
        cls = RQKMeansPlus if self.tokenizer == "rq_kmeans_plus" else RQVAE
        common = {"codebook_sizes": sizes, "hidden_dims": self.hidden_dims, "epochs": self.epochs,
                  "batch_size": self.batch_size, "kmeans_iters": self.kmeans_iters, "seed": seed}
        return cls(replace(cls.default_config(), **common))

    def commercial_config(self) -> CommercialConfig:
        return CommercialConfig(n_min=self.n_min, n_max=self.n_max, vocab_budget=self.vocab_budget)


@dataclass
class SidArtifacts:
    """Everything ``fit_scenario_sids`` produces; saved under a scenario bundle's ``sid/`` directory."""

    config: SidConfig
    tokenizer: SidTokenizer
    """``CommercialSid`` (ads: semantic + commercial level) or the semantic tokenizer itself."""
    ad_codes: np.ndarray
    """(n_ads, L) int64, row i = ad i."""
    organic_codes: np.ndarray
    """(n_organic, L_sem) int64: semantic levels only (organic items have no commercial attributes)."""
    ad_index: PathIndex
    """Full ad path -> ad ids."""

    @property
    def semantic(self) -> SemanticTokenizer:
        return self.tokenizer.semantic if isinstance(self.tokenizer, CommercialSid) else self.tokenizer

    def summary(self) -> dict:
        """Collisions and code usage of the ad paths, the numbers to check before trusting a scenario's SIDs."""
        sizes = self.tokenizer.codebook_sizes
        return {
            "n_ads": int(self.ad_codes.shape[0]),
            "ad_paths": self.ad_index.num_paths,
            "ad_collision_rate": collision_rate(self.ad_codes),
            "largest_ad_bucket": int(self.ad_index.bucket_sizes.max(initial=0)),
            "ad_code_usage": code_usage_rate(self.ad_codes, sizes).round(4).tolist(),
            "codebook_sizes": list(sizes),
        }

    def save(self, directory: str | Path) -> Path:
        """``meta.json`` (config, ``summary()``) + ``arrays.npz`` (codes), ``tokenizer/`` and ``ad_index.npz``."""
        directory = Path(directory)
        write_state(directory, kind="sid_artifacts", config=config_to_json(self.config), state=self.summary(),
                    arrays={"ad_codes": self.ad_codes, "organic_codes": self.organic_codes})
        self.tokenizer.save(directory / "tokenizer")
        self.ad_index.save(directory / "ad_index.npz")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        directory = Path(directory)
        config, _, arrays = read_state(directory, kind="sid_artifacts")
        missing = {"ad_codes", "organic_codes"} - set(arrays)
        if missing:
            raise AdSimDataError(f"SID arrays {sorted(missing)} are missing", file=str(directory / "arrays.npz"))
        try:
            sid_config = config_from_json(SidConfig, config)
        except (TypeError, ValueError) as e:
            raise AdSimDataError(f"the saved SID config is not a SidConfig: {e}", file=str(directory)) from None
        index_file = directory / "ad_index.npz"
        read_npz(index_file)  # a truncated or foreign file is a clear error before PathIndex reads it
        return cls(config=sid_config, tokenizer=load_tokenizer(directory / "tokenizer"),
                   ad_codes=arrays["ad_codes"], organic_codes=arrays["organic_codes"],
                   ad_index=PathIndex.load(index_file))

    def check(self, n_ads: int, n_organic: int, file: str) -> None:
        """The codes fit the bundle (one row per ad and per organic item, every code inside its level's codebook)
        and the path index is the index of the ad codes: what the simulator's trie and the env read."""
        sizes = np.asarray(self.tokenizer.codebook_sizes)
        for name, codes, rows, levels in (("ad_codes", self.ad_codes, n_ads, len(sizes)),
                                          ("organic_codes", self.organic_codes, n_organic, None)):
            if codes.ndim != 2 or codes.shape[0] != rows or codes.dtype.kind not in "iu":
                raise AdSimDataError(f"{name} must be ({rows}, L) integers, got {codes.dtype} {codes.shape}",
                                     file=file, column=name)
            width = levels or codes.shape[1]
            if codes.shape[1] != width or width > len(sizes):
                raise AdSimDataError(f"{name} has {codes.shape[1]} levels, the tokenizer {len(sizes)}", file=file,
                                     column=name)
            bad = np.flatnonzero(((codes < 0) | (codes >= sizes[:width])).any(axis=1))
            if len(bad):
                raise AdSimDataError(f"{name} has codes outside the codebooks {sizes.tolist()}", file=file,
                                     column=name, rows=bad)
        expected = PathIndex.from_codes(self.ad_codes)
        index = self.ad_index
        if not all(np.array_equal(getattr(index, f), getattr(expected, f)) for f in ("paths", "offsets", "items")):
            raise AdSimDataError("ad_index.npz is not the path index of ad_codes", file=file, column="ad_index")


def fit_scenario_sids(ad_embeddings: np.ndarray, ads: pd.DataFrame, organic_embeddings: np.ndarray,
                      config: SidConfig | None = None, fit_ads: np.ndarray | None = None) -> SidArtifacts:
    """Fit the configured SIDs on a scenario and encode all its ads and organic items.

    Args:
        ad_embeddings: ``(n_ads, D)``, row i = ad i.
        ads: the ads table (``ad_id`` = row index; goal, roi_target, industry_l1, bid when ``config.commercial``).
        organic_embeddings: ``(n_organic, D)``.
        config: defaults to RQ-Kmeans+ semantic levels with a Commercial SID last level.
        fit_ads: ``(n_ads,)`` bool, the ads the tokenizer and the commercial bins are fitted on (default: all);
            every ad is encoded. The build fits on the ads that exist during the training days only.
    """
    config = config or SidConfig()
    ad_x = check_embeddings(ad_embeddings, name="ad_embeddings")
    organic_x = check_embeddings(organic_embeddings, name="organic_embeddings", dim=ad_x.shape[1])
    if len(ads) != ad_x.shape[0]:
        raise AdSimDataError(f"ads has {len(ads)} rows but ad_embeddings has {ad_x.shape[0]}")
    if "ad_id" in ads.columns and not np.array_equal(ads["ad_id"].to_numpy(), np.arange(len(ads))):
        raise AdSimDataError("ad_id must equal the row index 0..n-1", column="ad_id")
    if config.commercial:
        check_attrs(ads, ad_x.shape[0])

    fit = np.ones(len(ads), dtype=bool) if fit_ads is None else np.asarray(fit_ads, dtype=bool)
    if fit.shape != (len(ads),) or not fit.any():
        raise AdSimDataError(f"fit_ads must be a ({len(ads)},) bool mask selecting at least one ad", column="fit_ads")
    fit_x = ad_x[fit]

    # fit set: the fitted ads plus a seeded subsample of organic items
    n_organic = organic_x.shape[0]
    if config.max_fit_items is not None:
        n_organic = min(n_organic, max(config.max_fit_items - fit_x.shape[0], 0))
    pick = np.sort(np.random.default_rng(config.seed).choice(organic_x.shape[0], size=n_organic, replace=False))
    semantic = config.semantic_tokenizer().fit(np.concatenate([fit_x, organic_x[pick]]))

    tokenizer: SidTokenizer = semantic
    if config.commercial:
        fit_table = ads.iloc[np.flatnonzero(fit)].reset_index(drop=True)
        tokenizer = CommercialSid(semantic, config.commercial_config()).fit(fit_x, fit_table)
    ad_codes = tokenizer.encode(ad_x, ads)
    return SidArtifacts(config=config, tokenizer=tokenizer, ad_codes=ad_codes,
                        organic_codes=semantic.encode(organic_x), ad_index=PathIndex.from_codes(ad_codes))


# --------------------------------------------------------------------------------------------- bundles
ADS_PER_SEMANTIC_LEAF = 8
"""Ads that share a full semantic prefix, on average: the commercial level then chooses among several of them."""


def semantic_codebook_sizes(n_items: int, ads_per_leaf: int = ADS_PER_SEMANTIC_LEAF) -> tuple[int, int]:
    """Codes of the two semantic levels, (a, 2a): a is the power of two nearest sqrt(n / (2 * ads_per_leaf)), within
    [4, 128], so a semantic leaf holds about ``ads_per_leaf`` ads ((4, 8) on tiny, (16, 32) on small).

    Sized so that every level of a personalised trie is a real choice. The earlier rule (sqrt(n) codes per level)
    left about one ad per leaf, so the commercial level was forced for most requests (tiny 83%, small 75% of
    decisions); the second level gets twice the first's codes because residual codes concentrate under a parent
    (with equal sizes tiny's second level was forced 63% of the time).
    """
    a = (max(n_items, 1) / (2 * ads_per_leaf)) ** 0.5
    a = int(np.clip(2 ** round(np.log2(max(a, 1))), 4, 128))
    return a, 2 * a


def train_ads(scenario) -> np.ndarray:
    """(n_ads,) bool: the ads that exist by the end of the training days (all ads when nothing is logged as train)."""
    req = scenario.table("requests")
    train = req["split"].astype(str).to_numpy() == "train"
    if not train.any():
        return np.ones(len(scenario.table("ads")), dtype=bool)
    return scenario.table("ads")["created_day"].to_numpy() <= int(req["day"].to_numpy()[train].max())


def sid_step(root: Path, scenario, progress: bool) -> dict:
    """Build step: fit the default SIDs (RQ-Kmeans+ with a Commercial SID last level) on the ads of the training
    days and a sample of organic items, encode every ad, into ``root / "sid"``."""
    fit = train_ads(scenario)
    sizes = semantic_codebook_sizes(int(fit.sum()))
    config = SidConfig(seed=int(scenario.manifest.get("seed") or 0), semantic_codebook_sizes=sizes,
                       vocab_budget=min(256, max(64, 8 * sizes[-1])))
    artifacts = fit_scenario_sids(np.asarray(scenario.ad_embeddings), scenario.table("ads"),
                                  np.asarray(scenario.organic_embeddings), config, fit_ads=fit)
    artifacts.save(root / "sid")
    return {
        "tokenizer": config.tokenizer + ("+commercial" if config.commercial else ""),
        "codebook_sizes": list(map(int, artifacts.tokenizer.codebook_sizes)),
        "fitted_on_ads": int(fit.sum()),
        "paths": int(len(np.unique(artifacts.ad_codes, axis=0))),
        "collision_rate": round(float(collision_rate(artifacts.ad_codes)), 4),
    }


def bundle_sids(scenario) -> SidArtifacts:
    """The SIDs a built bundle carries (``sid/``), with a clear error when the SID step never ran on it."""
    path = scenario.path / "sid"
    if not path.is_dir():
        raise AdSimDataError("the bundle has no semantic IDs: run `adsim build` (it fits them) on this scenario",
                             file=str(path))
    artifacts = SidArtifacts.load(path)
    artifacts.check(len(scenario.table("ads")), len(scenario.table("organic_items")), str(path))
    recorded = (scenario.manifest.get("sid") or {}).get("codebook_sizes")
    if recorded is not None and list(recorded) != list(artifacts.tokenizer.codebook_sizes):
        raise AdSimDataError(f"the manifest records codebook sizes {recorded}, the saved tokenizer has "
                             f"{list(artifacts.tokenizer.codebook_sizes)}: not the SIDs this bundle was built with",
                             file=str(path))
    return artifacts
