"""Typed YAML configs: overrides, unknown keys, wrong types."""
import pytest

from anymal.config import dump_yaml, load_train_config
from anymal.errors import ConfigError

RECIPE = """
model:
  modalities:
    image: {encoder: tiny-cnn, projector: resampler, num_tokens: 8}
data: {train: train.jsonl}
optim: {lr: 1e-3, max_steps: 5}
"""


def test_yaml_and_overrides(tmp_path):
    (tmp_path / "r.yaml").write_text(RECIPE)
    cfg = load_train_config(tmp_path / "r.yaml", ["optim.batch_size=4", "model.modalities.image.depth=3"])
    assert cfg.optim.lr == 1e-3 and cfg.optim.batch_size == 4 and cfg.optim.max_steps == 5
    img = cfg.model.modalities["image"]
    assert (img.projector, img.num_tokens, img.depth) == ("resampler", 8, 3)
    dump_yaml(cfg, tmp_path / "dumped.yaml")
    again = load_train_config(tmp_path / "dumped.yaml")
    assert again == cfg and again.recipe == str(tmp_path / "r.yaml")  # a dumped run config names its recipe


def test_unknown_key_and_wrong_type_name_the_field(tmp_path):
    (tmp_path / "r.yaml").write_text(RECIPE)
    with pytest.raises(ConfigError, match="lrr"):
        load_train_config(tmp_path / "r.yaml", ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="batch_size"):
        load_train_config(tmp_path / "r.yaml", ["optim.batch_size=many"])
    with pytest.raises(ConfigError, match="projector"):
        load_train_config(tmp_path / "r.yaml", ["model.modalities.image.projector=qformer"])
    with pytest.raises(ConfigError, match="key=value"):
        load_train_config(tmp_path / "r.yaml", ["optim.lr"])
    with pytest.raises(ConfigError, match="no such file"):
        load_train_config(tmp_path / "missing.yaml")
