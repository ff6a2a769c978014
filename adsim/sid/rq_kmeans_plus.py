"""RQ-Kmeans+ (GPR, section 4.2.1): an RQ-VAE whose codebooks start from RQ-Kmeans and whose encoder is residual.

Output = input + MLP(input) with the last layer at zero, so the latent starts equal to the input and the RQ-Kmeans
codebooks fit it exactly; training with the RQ-VAE loss then adapts codebooks and latent together. The paper puts
the residual connection on the encoder side; we mirror it in the decoder so that step 0 *is* RQ-Kmeans
(reconstruction = quantized input) and training starts from, rather than has to relearn, that solution.
"""

from __future__ import annotations

from adsim.sid.base import register
from adsim.sid.rq_vae import RQVAE, RQVAEConfig


@register
class RQKMeansPlus(RQVAE):
    """RQ-Kmeans+ tokenizer: ``RQVAE`` with ``kmeans_init=True`` and ``residual=True`` (checked)."""

    kind = "rq_kmeans_plus"

    def __init__(self, config: RQVAEConfig | None = None):
        super().__init__(config)
        if not (self.config.kmeans_init and self.config.residual):
            raise ValueError("RQKMeansPlus needs config.kmeans_init=True and config.residual=True; "
                             "use RQVAE for other combinations")

    @classmethod
    def default_config(cls) -> RQVAEConfig:
        return RQVAEConfig(hidden_dims=(256,), latent_dim=None, residual=True, kmeans_init=True)
