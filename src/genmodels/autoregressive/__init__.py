"""Autoregressive models (seed 004): PixelCNN on discrete images (:mod:`.pixelcnn`);
WaveNet on discrete sequences such as μ-law audio (:mod:`.wavenet`). Importing this package
registers them in :data:`genmodels.registry.MODELS`."""

from . import pixelcnn  # registers "pixelcnn"
from . import wavenet  # registers "wavenet"
