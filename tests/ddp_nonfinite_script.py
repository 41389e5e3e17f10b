"""Two-process CPU run for tests/test_train_guard.py::test_two_process_nonfinite_on_one_rank_stops_both.

Run as ``torchrun --standalone --nproc_per_node=2 tests/ddp_nonfinite_script.py DIR``. Rank 1 alone gets a NaN loss at
step 3, with finite gradients (``loss + nan``), so only the agreed decision can stop rank 0 too: both must raise
NonFiniteError at step 3 (each prints ``NONFINITE_OK``) with the step-2 checkpoint kept. Then, with
``skip_nonfinite=1``, both skip that step and end with equal weights and EMA (rank 0 prints ``SKIP_OK``).
"""

from __future__ import annotations

import gc
import math
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _toy_model import TOY_NAME, TOY_SPEC, ToyConfig, build_toy, toy_data
from ddp_script import assert_same_on_all_ranks, flat_params
from genmodels.checkpoint import RunConfig
from genmodels.train import NonFiniteError, TrainConfig, Trainer


def nan_loss_on_rank_1_at(model, step: int) -> None:
    orig, calls = model.loss, [0]

    def loss(x, generator=None, y=None):
        calls[0] += 1
        out = orig(x, generator=generator)
        return out + math.nan if calls[0] == step and dist.get_rank() == 1 else out

    model.loss = loss


def main(folder: str) -> None:
    torch.set_num_threads(1)
    rank = dist.get_rank() if dist.is_initialized() else None
    config = TrainConfig(steps=4, batch_size=16, lr=1e-2, warmup_steps=0, log_every=1, checkpoint_every=2,
                         progress=False)
    run_config = RunConfig(model=TOY_NAME, model_config=ToyConfig(hidden=8), data="toy", spec=TOY_SPEC)
    trainers = []
    for name, cfg in (("stop", config), ("skip", TrainConfig(**{**config.__dict__, "skip_nonfinite": 1}))):
        torch.manual_seed(0)
        model = build_toy(ToyConfig(hidden=8), TOY_SPEC)
        nan_loss_on_rank_1_at(model, 3)
        trainer = Trainer(model, toy_data(64), TOY_SPEC, cfg, Path(folder) / name, run_config)
        trainers.append(trainer)
        rank = trainer.accelerator.process_index
        if name == "stop":
            try:
                trainer.fit()
            except NonFiniteError as e:
                print(f"NONFINITE_OK rank={rank} step={e.step} checkpoint={e.checkpoint_step}", flush=True)
            else:
                raise AssertionError(f"rank {rank} did not stop")
        else:
            result = trainer.fit()
            assert result.steps == 4, result
            assert_same_on_all_ranks(flat_params(model), "parameters")
            assert_same_on_all_ranks(flat_params(trainer.ema_model), "EMA")
            if rank == 0:
                print(f"SKIP_OK world={dist.get_world_size()} skipped={trainer._skipped}", flush=True)
    acc = trainers[-1].accelerator
    del trainers, trainer, model
    acc.free_memory()
    gc.collect()
    acc.end_training()


if __name__ == "__main__":
    main(sys.argv[1])
