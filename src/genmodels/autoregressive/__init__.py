"""Autoregressive models (seed 004): PixelCNN on discrete images (:mod:`.pixelcnn`); WaveNet on discrete sequences
such as μ-law audio (:mod:`.wavenet`). :mod:`genmodels.families` registers them (``pixelcnn``, ``wavenet``)."""
