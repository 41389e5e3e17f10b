"""Score-based models: score-matching losses and Langevin samplers (seed 003; Song & Ermon 2019; Song et al. 2021).

:mod:`.losses` holds the per-example objectives (explicit, sliced and denoising score matching) and the Jacobian
trace helpers; :mod:`.langevin` the samplers that use a score (Langevin, annealed Langevin, predictor–corrector).
Import them from their modules; this package imports nothing on its own.
"""
