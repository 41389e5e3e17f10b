"""Normalizing flows (seed 004; NICE, RealNVP, Glow): invertible transforms with tractable log-determinants
(:mod:`.transforms`) composed over a standard normal base into models (:mod:`.flow`). Importing this package
registers ``nice``, ``realnvp`` and ``glow`` in :data:`genmodels.registry.MODELS`."""

from .flow import NICE, Flow, FlowConfig, Glow, GlowConfig, NICEConfig, RealNVP, RealNVPConfig

__all__ = ["Flow", "FlowConfig", "NICE", "NICEConfig", "RealNVP", "RealNVPConfig", "Glow", "GlowConfig"]
