"""Two-process CPU training for tests/test_train.py::test_two_process_ddp.

Run as ``torchrun --standalone --nproc_per_node=2 tests/ddp_script.py RUN_DIR``. Each rank builds
the toy model from a *different* seed; the trainer's DDP broadcast must make them equal, and the
averaged gradients must keep them equal after every step (checked with all_gather). Exits non-zero
on any mismatch; rank 0 prints ``DDP_OK`` at the end.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _toy_model import TOY_NAME, TOY_SPEC, ToyConfig, build_toy, toy_data
from genmodels.checkpoint import RunConfig
from genmodels.train import TrainConfig, Trainer


def flat_params(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def assert_same_on_all_ranks(t: torch.Tensor, what: str) -> None:
    gathered = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, t)
    for r, other in enumerate(gathered):
        if not torch.equal(other, gathered[0]):
            raise AssertionError(f"{what}: rank {r} differs from rank 0 "
                                 f"(max |Δ| {(other - gathered[0]).abs().max():.3g})")


def main(run_dir: str) -> None:
    torch.set_num_threads(1)
    config = TrainConfig(steps=4, batch_size=16, lr=1e-2, warmup_steps=0, log_every=2,
                         checkpoint_every=0, progress=False)
    cfg = ToyConfig(hidden=8)
    steps_per_fit = 2
    run_config = RunConfig(model=TOY_NAME, model_config=cfg, data="toy", spec=TOY_SPEC)
    trainer = None
    for fit in range(config.steps // steps_per_fit):  # 2 steps at a time, checking in between
        torch.manual_seed(1000 + int(__import__("os").environ["RANK"]))  # different init per rank
        model = build_toy(cfg, TOY_SPEC)
        step_config = TrainConfig(**{**config.__dict__, "steps": steps_per_fit * (fit + 1)})
        trainer = Trainer(model, toy_data(64), TOY_SPEC, step_config, run_dir, run_config)
        before = flat_params(model)
        result = trainer.fit(resume=fit > 0)
        after = flat_params(model)
        assert not torch.equal(before, after), "parameters did not change"
        assert_same_on_all_ranks(after, f"parameters after step {result.steps}")
        assert_same_on_all_ranks(flat_params(trainer.ema_model), f"EMA after step {result.steps}")
    assert result.steps == config.steps and result.images_seen == config.steps * config.batch_size
    if dist.get_rank() == 0:
        print(f"DDP_OK world={dist.get_world_size()} steps={result.steps} loss={result.final_loss:.6f}",
              flush=True)
    # Destroy the gloo group before exit, after dropping every DDP wrapper of the fits above (accelerate keeps
    # references to prepared models): otherwise gloo can abort at interpreter shutdown (exit −6) after success.
    acc = trainer.accelerator
    del trainer, model
    acc.free_memory()
    gc.collect()
    acc.end_training()


if __name__ == "__main__":
    main(sys.argv[1])
