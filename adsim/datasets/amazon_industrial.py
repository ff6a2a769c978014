"""Amazon Reviews 2018 "Industrial and Scientific" as preprocessed by MiniOneRec: 3,686 real products with text,
real user sequences (valid and test splits), and that project's 3-level, 256-code semantic IDs.

Read-only, from ``adsim.paths.shared_data_dir() / "amazon_industrial"`` (see the NOTICE.txt there for source,
license and split); nothing is copied into the project.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from adsim.errors import AdSimDataError
from adsim.paths import shared_data_set

REFERENCE_CODEBOOK_SIZES = (256, 256, 256)
"""The shipped reference SIDs: 3 levels of 256 codes, tokens ``<a_i>``, ``<b_j>``, ``<c_k>``."""
SPLITS = ("valid", "test")
_SID_TOKEN = re.compile(r"<([a-z])_(\d+)>")


@dataclass
class AmazonIndustrial:
    items: pd.DataFrame
    """One row per item, ``item_id`` = row index: item_id, title, brand, description (list parts joined)."""
    sequences: pd.DataFrame
    """One row per (history, next item) window: split, user_id, history (list of item ids, oldest first),
    item_id (the next item)."""
    reference_sids: np.ndarray
    """(n_items, 3) int64 MiniOneRec's semantic IDs, row i = item i."""

    def item_texts(self) -> list[str]:
        """``"title. Brand: brand. description"`` per item, the text to embed."""
        return [". ".join(p for p in (row.title, f"Brand: {row.brand}" if row.brand else "", row.description) if p)
                for row in self.items.itertuples()]


def _description(raw: str) -> str:
    """Descriptions are stored as Python list literals (``"['part', 'part']"``); join the non-empty parts."""
    try:
        parts = ast.literal_eval(raw) if raw.startswith("[") else [raw]
    except (ValueError, SyntaxError):
        parts = [raw]
    return " ".join(str(p).strip() for p in parts if str(p).strip())


def parse_sid(text: str) -> list[int]:
    """``"<a_236><b_231><c_226>"`` -> ``[236, 231, 226]``; levels must be a, b, c, ... in order."""
    tokens = _SID_TOKEN.findall(text)
    if not tokens or [t[0] for t in tokens] != [chr(ord("a") + i) for i in range(len(tokens))]:
        raise ValueError(f"not a SID string: {text!r}")
    return [int(code) for _, code in tokens]


def load_amazon_industrial(root: str | Path | None = None) -> AmazonIndustrial:
    """Load and check the data set (ids contiguous, SIDs well-formed, sequences referring to known items).

    Args:
        root: the data set's folder; default ``adsim.paths.shared_data_dir() / "amazon_industrial"``.
    """
    root = Path(root) if root is not None else shared_data_set("amazon_industrial")
    items_path, sids_path = root / "items.json", root / "reference_sids.json"
    for path in (items_path, sids_path, *(root / f"{s}.csv" for s in SPLITS)):
        if not path.is_file():
            raise AdSimDataError("Amazon Industrial file is missing", file=str(path))

    raw = json.loads(items_path.read_text())
    n = len(raw)
    if sorted(raw, key=int) != [str(i) for i in range(n)]:
        raise AdSimDataError("item ids must be 0..n-1", file=str(items_path))
    items = pd.DataFrame({
        "item_id": np.arange(n, dtype=np.int64),
        "title": [raw[str(i)]["title"].strip() for i in range(n)],
        "brand": [(raw[str(i)].get("brand") or "").strip() for i in range(n)],
        "description": [_description(raw[str(i)].get("description") or "") for i in range(n)],
    })

    sid_raw = json.loads(sids_path.read_text())
    if set(sid_raw) != set(raw):
        raise AdSimDataError("reference SIDs must cover exactly the items", file=str(sids_path))
    try:
        reference = np.array([parse_sid("".join(sid_raw[str(i)])) for i in range(n)], dtype=np.int64)
    except ValueError as e:
        raise AdSimDataError(str(e), file=str(sids_path)) from e
    if reference.shape != (n, len(REFERENCE_CODEBOOK_SIZES)) or (reference >= REFERENCE_CODEBOOK_SIZES).any():
        raise AdSimDataError(f"reference SIDs must be 3 levels of codes < 256, got shape {reference.shape}",
                             file=str(sids_path))

    frames = []
    for split in SPLITS:
        path = root / f"{split}.csv"
        df = pd.read_csv(path, usecols=["user_id", "history_item_id", "item_id"])
        history = df["history_item_id"].map(json.loads)
        flat = np.concatenate([np.asarray(h, dtype=np.int64) for h in history] + [df["item_id"].to_numpy()])
        if (bad := np.flatnonzero((flat < 0) | (flat >= n))).size:
            raise AdSimDataError(f"sequences refer to {bad.size} unknown item ids", file=str(path),
                                 column="history_item_id/item_id")
        frames.append(pd.DataFrame({"split": split, "user_id": df["user_id"].astype(str), "history": history,
                                    "item_id": df["item_id"].astype(np.int64)}))
    return AmazonIndustrial(items=items, sequences=pd.concat(frames, ignore_index=True), reference_sids=reference)
