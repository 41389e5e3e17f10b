"""Score-based models: score-matching losses, Langevin samplers and the models (seed 003; Song & Ermon 2019;
Song et al. 2021).

:mod:`.losses` holds the per-example objectives (explicit, sliced and denoising score matching) and the Jacobian
trace helpers; :mod:`.langevin` the samplers that use a score (Langevin, annealed Langevin);
:mod:`.base` what the score-based model families share (no likelihood, their own samplers); :mod:`.ebm` the
energy-based model f_θ with score −∇f_θ and :mod:`.ncsn` the noise-conditional score network, both registered
in :data:`genmodels.families.MODELS` (``ebm``, ``ncsn``). Import them from their modules; this package imports
nothing on its own.
"""
