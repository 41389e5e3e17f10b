"""Run folders: typed config round trips, safetensors save/load, EMA vs raw, errors, atomic writes."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Literal

import pytest
import torch

from _toy_model import TOY_NAME, TOY_SPEC, ToyConfig, build_toy, toy_data
from genmodels.checkpoint import (
    CONFIG_NAME,
    EMA_WEIGHTS_NAME,
    WEIGHTS_NAME,
    RunConfig,
    atomic_write_bytes,
    atomic_write_text,
    config_from_dict,
    config_to_dict,
    from_pretrained,
    load_run_config,
    save_pretrained,
)
from genmodels.train import TrainConfig


@dataclass(frozen=True)
class NetCfg:
    channels: tuple[int, ...] = (32, 64)
    attention: tuple[bool, bool] = (False, True)
    dropout: float = 0.0


@dataclass(frozen=True)
class ModelCfg:
    net: NetCfg = field(default_factory=NetCfg)
    schedule: Literal["linear", "cosine"] = "linear"
    timesteps: int = 1000
    clip: float | None = None
    name: str = "m"


def _run_config(cfg: ToyConfig = ToyConfig(), train: TrainConfig | None = None) -> RunConfig:
    return RunConfig(model=TOY_NAME, model_config=cfg, data="toy", spec=TOY_SPEC, train=train)


def _outputs(model) -> tuple[torch.Tensor, torch.Tensor]:
    x = toy_data(32, seed=1)
    loss = model.loss(x, generator=torch.Generator().manual_seed(0))
    samples = model.sample(8, generator=torch.Generator().manual_seed(0))
    return loss.detach(), samples


# ------------------------------------------------------------------------------------------------
# config_from_dict


def test_config_round_trip_nested_tuple_literal_optional():
    cfg = ModelCfg(net=NetCfg(channels=(8, 16, 32), attention=(True, False), dropout=0.1),
                   schedule="cosine", timesteps=50, clip=1.5, name="x")
    d = json.loads(json.dumps(config_to_dict(cfg)))  # through real JSON: tuples become lists
    assert d["net"]["channels"] == [8, 16, 32]
    back = config_from_dict(ModelCfg, d)
    assert back == cfg and isinstance(back.net.channels, tuple)
    assert config_from_dict(ModelCfg, {}) == ModelCfg()  # defaults fill absent keys
    assert config_from_dict(ModelCfg, {"clip": None, "net": {"dropout": 1}}).net.dropout == 1.0


def test_config_unknown_key_names_key_and_class():
    with pytest.raises(ValueError, match=r"unknown key.*'depth'.*ModelCfg"):
        config_from_dict(ModelCfg, {"depth": 3})
    with pytest.raises(ValueError, match=r"ModelCfg\.net.*unknown key.*'width'.*NetCfg"):
        config_from_dict(ModelCfg, {"net": {"width": 3}})


@pytest.mark.parametrize("bad, where", [
    ({"schedule": "quadratic"}, "ModelCfg.schedule"),
    ({"timesteps": 1.5}, "ModelCfg.timesteps"),
    ({"timesteps": True}, "ModelCfg.timesteps"),
    ({"net": {"channels": [8, "a"]}}, r"ModelCfg.net.channels\[1\]"),
    ({"net": {"attention": [True]}}, "ModelCfg.net.attention"),
    ({"clip": "high"}, "ModelCfg.clip"),
])
def test_config_bad_values_name_the_field(bad, where):
    with pytest.raises(ValueError, match=where):
        config_from_dict(ModelCfg, bad)


def test_config_missing_required_field():
    @dataclass(frozen=True)
    class Needs:
        n: int

    with pytest.raises(ValueError, match=r"missing required field.*'n'"):
        config_from_dict(Needs, {})


def test_train_config_round_trip():
    cfg = TrainConfig(steps=7, betas=(0.5, 0.9), grad_clip=None, time_limit_minutes=30.0)
    assert config_from_dict(TrainConfig, json.loads(json.dumps(config_to_dict(cfg)))) == cfg


# ------------------------------------------------------------------------------------------------
# save_pretrained / from_pretrained


def test_save_load_round_trip_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = build_toy(ToyConfig(hidden=8, activation="tanh"), TOY_SPEC)
    rc = _run_config(ToyConfig(hidden=8, activation="tanh"), TrainConfig(steps=3))
    save_pretrained(tmp_path, model, rc)
    assert sorted(os.listdir(tmp_path)) == [CONFIG_NAME, WEIGHTS_NAME]  # no temp files left
    loaded, rc2 = from_pretrained(tmp_path)
    assert rc2 == rc and load_run_config(tmp_path) == rc
    assert not loaded.training
    for a, b in zip(_outputs(model.eval()), _outputs(loaded), strict=True):
        assert torch.equal(a, b)
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert config["model"] == TOY_NAME and config["spec"]["event_shape"] == [2]


def test_ema_vs_raw_weights(tmp_path):
    torch.manual_seed(0)
    raw = build_toy(ToyConfig(), TOY_SPEC)
    ema = build_toy(ToyConfig(), TOY_SPEC)  # different weights
    save_pretrained(tmp_path, raw, _run_config(), ema_model=ema)
    assert sorted(os.listdir(tmp_path)) == [CONFIG_NAME, EMA_WEIGHTS_NAME, WEIGHTS_NAME]
    for want, flag in ((ema, True), (raw, False)):
        got, _ = from_pretrained(tmp_path, ema=flag)
        for k, v in want.state_dict().items():
            assert torch.equal(got.state_dict()[k], v), k
    (tmp_path / EMA_WEIGHTS_NAME).unlink()  # no EMA file: falls back to raw
    got, _ = from_pretrained(tmp_path, ema=True)
    assert torch.equal(got.inp.weight, raw.inp.weight)


def test_tied_tensors_saved_once(tmp_path):
    cfg = ToyConfig(share_embedding=True)
    model = build_toy(cfg, TOY_SPEC)
    assert "embed_alias.weight" in model.state_dict()
    save_pretrained(tmp_path, model, _run_config(cfg))
    loaded, _ = from_pretrained(tmp_path)
    assert loaded.embed_alias is loaded.embed
    assert torch.equal(loaded.embed.weight, model.embed.weight)


def test_missing_and_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        from_pretrained(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"no config.json"):
        from_pretrained(tmp_path)
    save_pretrained(tmp_path, build_toy(ToyConfig(), TOY_SPEC), _run_config())
    (tmp_path / WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=r"no model.safetensors"):
        from_pretrained(tmp_path)
    d = json.loads((tmp_path / CONFIG_NAME).read_text())
    (tmp_path / CONFIG_NAME).write_text(json.dumps({**d, "model": "no-such-model"}))
    with pytest.raises(ValueError, match=r"'no-such-model' is not registered.*_test_toy"):
        from_pretrained(tmp_path)
    (tmp_path / CONFIG_NAME).write_text(json.dumps({**d, "model_config": {"widht": 3}}))
    with pytest.raises(ValueError, match=r"config.json.*unknown key.*'widht'.*ToyConfig"):
        load_run_config(tmp_path)


def test_mismatched_weights_and_configs(tmp_path):
    save_pretrained(tmp_path, build_toy(ToyConfig(hidden=4), TOY_SPEC), _run_config(ToyConfig(hidden=4)))
    d = json.loads((tmp_path / CONFIG_NAME).read_text())
    d["model_config"]["hidden"] = 5
    (tmp_path / CONFIG_NAME).write_text(json.dumps(d))
    with pytest.raises(ValueError, match="does not match"):
        from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="configured by ToyConfig"):
        save_pretrained(tmp_path, build_toy(ToyConfig(), TOY_SPEC),
                        RunConfig(model=TOY_NAME, model_config=ModelCfg(), data="toy", spec=TOY_SPEC))


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")
    plain = tmp_path / "plain"
    plain.write_text("")
    assert target.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # 0666 & ~umask, not mkstemp's 0600
    plain.unlink()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]  # the temp file was removed
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_write_text(tmp_path / "missing" / "f.txt", "x")
