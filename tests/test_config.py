"""Typed YAML configs: overrides, unknown keys, wrong types."""
from pathlib import Path

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


@pytest.mark.parametrize("override, message", [
    ("model.modalities.image.projector=mpl", r"modalities.image.projector: unknown projector 'mpl'; known: bind, linear, mlp"),
    ("stage=algn", r"stage: unknown training stage 'algn'; known: align, bind, bind-inject, full, instruct"),
    ("model.modalities.imgae={}", r"modalities.imgae: unknown modality 'imgae'; known: audio, image, imu, points, video"),
])
def test_registered_names_are_checked_at_load_against_the_registries(tmp_path, override, message):
    p = tmp_path / "r.yaml"
    p.write_text("stage: align\n")
    with pytest.raises(ConfigError, match=message):
        load_train_config(p, [override])


def test_a_registry_fills_itself_from_its_home_package(tmp_path, monkeypatch):
    """A registry imports the package that registers its entries the first time it is read, so the
    ground layer (configs) can check names without importing the layers above it."""
    import sys
    import types

    from anymal.registry import Registry

    holder = types.ModuleType("registry_holder_for_test")
    holder.REG = reg = Registry("thing", home="registry_home_for_test")
    monkeypatch.setitem(sys.modules, holder.__name__, holder)
    (tmp_path / "registry_home_for_test.py").write_text(
        "from registry_holder_for_test import REG\nREG.add('late', 1, 'registered when imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "registry_home_for_test" not in sys.modules
    assert "late" in reg and reg.names() == ["late"] and reg["late"] == 1 and reg.about("late")
    assert "registry_home_for_test" in sys.modules
    monkeypatch.delitem(sys.modules, "registry_home_for_test")
    with pytest.raises(ConfigError, match="things.x: unknown thing 'early'; known: late"):
        reg.check("early", "things.x")


def test_every_registry_is_complete_in_a_fresh_process():
    """Reading a registry first thing in a new process lists every registration (the CLI once found no
    video wrapper: its module was imported by nothing its home imports)."""
    import subprocess
    import sys

    code = ("from anymal.registry import ENCODERS, LLMS, PROJECTORS, STAGES, WRAPPERS; "
            "print(*(len(r) for r in (ENCODERS, LLMS, PROJECTORS, STAGES)), WRAPPERS.names())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert all(int(n) >= 3 for n in out[:4]) and out[4:] == ["['frames']"], out


def test_a_shipped_recipe_is_found_by_its_name_from_any_directory(tmp_path, monkeypatch):
    """`anymal train tuxpaint-align` failed: recipes were read by path only, and a wheel install has no
    anymal/recipes/ under the working directory."""
    from anymal.config import load_train_config
    from anymal.errors import ConfigError
    from anymal.paths import RECIPES_DIR

    monkeypatch.chdir(tmp_path)
    for name in ("tuxpaint-align", "tuxpaint-align.yaml"):
        assert Path(load_train_config(name).recipe) == RECIPES_DIR / "tuxpaint-align.yaml"
    (tmp_path / "tuxpaint-align.yaml").write_text("stage: align\n")  # a file of that name here wins
    assert load_train_config("tuxpaint-align.yaml").recipe == "tuxpaint-align.yaml"
    with pytest.raises(ConfigError, match="nor a shipped recipe of that name .*tuxpaint-align"):
        load_train_config("no-such-recipe")
