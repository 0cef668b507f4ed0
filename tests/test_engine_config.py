"""Strict YAML configs: unknown keys, wrong types and bad choices name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mvpose.engine.config import ConfigError, apply_overrides, config_to_dict, load_config
from mvpose.engine.run import main as train_main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_unknown_key_names_key_and_file(tmp_path):
    f = _write(tmp_path / "bad.yaml", "model:\n  kind: volumetric\n  volum_size: 32\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    msg = str(err.value)
    assert "model.volum_size" in msg and str(f) in msg and "unknown key" in msg


@pytest.mark.parametrize(
    "text, key, expect",
    [
        ("train:\n  max_steps: 1.5\n", "train.max_steps", "integer"),
        ("model:\n  kind: transformer\n", "model.kind", "one of"),
        ("optim:\n  lr: fast\n", "optim.lr", "number"),
        ("log:\n  tensorboard: 1\n", "log.tensorboard", "true/false"),
        ("data: [1, 2]\n", "data", "mapping"),
    ],
)
def test_type_errors(tmp_path, text, key, expect):
    f = _write(tmp_path / "c.yaml", text)
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert key in str(err.value) and expect in str(err.value)


def test_yaml_exponent_without_dot_is_a_float(tmp_path):
    assert load_config(_write(tmp_path / "c.yaml", "optim:\n  lr: 1e-4\n")).optim.lr == pytest.approx(1e-4)


def test_set_overrides_are_type_checked():
    cfg = load_config(None, ["optim.lr=3e-4", "model.v2v_channels=[32, 64]", "model.limb_stats=null"])
    assert cfg.optim.lr == pytest.approx(3e-4) and cfg.model.v2v_channels == [32, 64]
    with pytest.raises(ConfigError, match="train.max_steps"):
        load_config(None, ["train.max_steps=ten"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, ["train.max_steps"])
    with pytest.raises(ConfigError, match="optim.nope"):
        load_config(None, ["optim.nope=1"])


def test_base_is_merged_and_cycles_fail(tmp_path):
    _write(tmp_path / "a.yaml", "name: a\noptim:\n  lr: 0.5\n  gamma: 0.2\n")
    cfg = load_config(_write(tmp_path / "b.yaml", "base: a.yaml\nname: b\noptim:\n  lr: 0.25\n"))
    assert (cfg.name, cfg.optim.lr, cfg.optim.gamma) == ("b", 0.25, 0.2)
    _write(tmp_path / "x.yaml", "base: y.yaml\n")
    _write(tmp_path / "y.yaml", "base: x.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "x.yaml")


def test_apply_overrides_does_not_mutate():
    data = {"optim": {"lr": 1.0}}
    out = apply_overrides(data, ["optim.lr=2"])
    assert data["optim"]["lr"] == 1.0 and out["optim"]["lr"] == 2


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_shipped_configs_load(path):
    from mvpose.engine.config import read_config_dict

    if read_config_dict(path).get("task", "multiview") != "multiview":
        pytest.skip("a sequence config (tests/test_sequence_engine.py loads those)")
    cfg = load_config(path)
    d = config_to_dict(cfg)
    assert d["model"]["kind"] in ("algebraic", "volumetric", "contextpose")
    if cfg.model.kind != "algebraic":
        assert cfg.model.volume_size % 2 ** (len(cfg.model.v2v_channels) - 1) == 0


def test_train_py_reports_config_errors(tmp_path, capsys):
    assert train_main(["--set", "model.foo=1"]) == 2
    assert "model.foo" in capsys.readouterr().out
    assert train_main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().out
