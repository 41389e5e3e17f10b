"""Variational autoencoders: the Gaussian VAE (:mod:`.vae`) and the hierarchical VAE (:mod:`.hvae`), with their
decoder distributions (:mod:`.likelihoods`). Importing this package registers ``vae`` and ``hvae``."""

from .hvae import HVAE, HVAEConfig
from .vae import VAE, LatentVariableModel, VAEConfig

__all__ = ["VAE", "VAEConfig", "HVAE", "HVAEConfig", "LatentVariableModel"]
