"""Two-process streamed training for tests/data/test_streaming.py::test_two_process_ddp_streams_disjoint_shards.

Run as ``torchrun --standalone --nproc_per_node=2 tests/ddp_stream_script.py FOLDER RUN_DIR``. Each process trains a
small VAE on ``folder:FOLDER?stream=true`` (read in the process, ``data_workers=0``, so that what it decodes can be
recorded); the indices each one decoded at each step are gathered, and rank 0 checks they are disjoint and together
a whole global batch, then prints ``STREAM_DDP_OK``.
"""

from __future__ import annotations

import gc
import sys

import torch
import torch.distributed as dist

from genmodels.checkpoint import RunConfig
from genmodels.data import load_dataset
from genmodels.data.examples import ImageFiles
from genmodels.families import MODELS
from genmodels.jobs import model_config
from genmodels.train import TrainConfig, Trainer

STEPS, BATCH = 3, 8


def main(folder: str, run_dir: str) -> None:
    torch.set_num_threads(1)
    data = f"folder:{folder}?stream=true"
    ds = load_dataset(data)
    cfg = model_config("vae", ds.spec, ["latent_dim=4"])
    run_config = RunConfig.for_dataset("vae", cfg, data, ds)
    read: list[list[int]] = []
    original = ImageFiles.levels_at
    ImageFiles.levels_at = lambda self, index: (read.append(index.tolist()), original(self, index))[1]
    torch.manual_seed(0)
    model = MODELS.get("vae").build(cfg, ds.spec)
    config = TrainConfig(steps=STEPS, batch_size=BATCH, log_every=1, checkpoint_every=0, sample_every=0,
                         progress=False, data_workers=0)
    trainer = Trainer(model, ds.train, ds.spec, config, run_dir, run_config)
    trainer.fit()
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, read)
    if dist.get_rank() == 0:
        a, b = gathered
        assert len(a) == len(b) == STEPS, (len(a), len(b))
        for step, (ia, ib) in enumerate(zip(a, b, strict=True)):
            assert len(ia) == len(ib) == BATCH // 2, (step, ia, ib)
            assert not set(ia) & set(ib), f"step {step}: both processes read {set(ia) & set(ib)}"
        print(f"STREAM_DDP_OK steps={STEPS} per_process={BATCH // 2}", flush=True)
    acc = trainer.accelerator
    del trainer, model
    acc.free_memory()
    gc.collect()
    acc.end_training()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
