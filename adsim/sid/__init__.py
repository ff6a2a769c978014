"""Semantic IDs: every ad and organic item becomes an L-level code path, coarse to fine.

Tokenizers share one interface (``fit``, ``encode``, ``codebook_sizes``, ``save``/``load``): ``RQKMeans``
(residual k-means), ``RQVAE`` (the collapsing baseline), ``RQKMeansPlus`` (GPR), ``CommercialSid`` (UniVA: semantic
upper levels + a commercial last level) and ``UniSID`` (codes learned end to end from the embedding and categorical
attributes). ``fit_scenario_sids`` is the one call the scenario builder makes. Importing this package does not import
torch; only fitting an RQ-VAE / RQ-Kmeans+ / UniSID does.
"""

from adsim.sid.base import FORMAT_VERSION, SemanticTokenizer, SidTokenizer, load_tokenizer
from adsim.sid.commercial import CommercialCoder, CommercialConfig, CommercialSid
from adsim.sid.path_index import PathIndex
from adsim.sid.pipeline import SidArtifacts, SidConfig, fit_scenario_sids
from adsim.sid.rq_kmeans import RQKMeans, RQKMeansConfig
from adsim.sid.rq_kmeans_plus import RQKMeansPlus
from adsim.sid.rq_vae import RQVAE, RQVAEConfig
from adsim.sid.unisid import UniSID, UniSIDConfig

__all__ = [
    "FORMAT_VERSION", "CommercialCoder", "CommercialConfig", "CommercialSid", "PathIndex", "RQKMeans",
    "RQKMeansConfig", "RQKMeansPlus", "RQVAE", "RQVAEConfig", "SemanticTokenizer", "SidArtifacts", "SidConfig",
    "SidTokenizer", "UniSID", "UniSIDConfig", "fit_scenario_sids", "load_tokenizer",
]
