"""The GPU recipes for real backbones (LLaVA-1.5-style CLIP + 7B, AnyMAL-style SigLIP + resampler +
int4 LLM, each with its LoRA stage 2), run here unchanged but for the model ids, data and length:
tiny random models of the same Hugging Face classes (CLIPVisionModel, SiglipVisionModel,
Qwen2ForCausalLM) built locally, stage 1 under torchrun with 2 processes (gloo), stage 2 from its
checkpoint. On a GPU machine the same commands run with the real ids (docs/training.md)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from anymal import AnyMAL
from anymal.config import load_train_config
from anymal.paths import PACKAGE_DIR
from anymal.train.loop import train
from conftest import make_tokenizer, run_cli

RECIPES = PACKAGE_DIR / "recipes"
pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def backbones(tmp_path_factory) -> dict[str, Path]:
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, Qwen2Config, Qwen2ForCausalLM,
                              SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel)

    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=56,
                 patch_size=14)
    CLIPVisionModel(CLIPVisionConfig(**tower)).save_pretrained(root / "clip")
    CLIPImageProcessor(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}).save_pretrained(root / "clip")
    SiglipVisionModel(SiglipVisionConfig(**tower)).save_pretrained(root / "siglip")
    SiglipImageProcessor(size={"height": 56, "width": 56}).save_pretrained(root / "siglip")
    tok = make_tokenizer()
    Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                 tie_word_embeddings=True, eos_token_id=tok.eos_token_id,
                                 pad_token_id=tok.pad_token_id)).save_pretrained(root / "qwen")
    tok.save_pretrained(root / "qwen")
    return {"clip": root / "clip", "siglip": root / "siglip", "qwen": root / "qwen"}


def _data(tmp_path, images) -> Path:
    """LLaVA-format JSONL, as `jq -c '.[]'` makes from LLaVA's own JSON files."""
    rows = [{"id": str(i), "image": str(p), "conversations": [
        {"from": "human", "value": "<image>\nDescribe the picture briefly."},
        {"from": "gpt", "value": f"A {c} square on white."}]}
        for i, (p, c) in enumerate(zip(images * 2, ["red", "green", "blue", "yellow"] * 2))]
    f = tmp_path / "llava.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return f


def _overrides(backbones, tower: str, data: Path, out: Path) -> list[str]:
    return [f"model.llm.id={backbones['qwen']}", f"model.modalities.image.encoder={backbones[tower]}",
            "model.llm.max_length=256", f"data.train={data}", "optim.max_steps=2", "optim.batch_size=2",
            "optim.warmup_steps=1", f"output_dir={out}", "log_every=1"]


@pytest.mark.parametrize("family, tower", [("llava15", "clip"), ("anymal-siglip", "siglip")])
def test_a_real_backbone_recipe_runs_unchanged_under_torchrun_then_its_lora_stage(family, tower, backbones, images,
                                                                                   tmp_path):
    data = _data(tmp_path, images)
    env = {**os.environ, "ANYMAL_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    align = [f"--set={o}" for o in _overrides(backbones, tower, data, tmp_path / "align")]
    res = run_cli("train", str(RECIPES / f"{family}-align.yaml"), "--no-progress", *align, env=env,
                  torchrun=tmp_path / "launch.py")
    assert "2 process(es)" in res.stderr
    manifest = json.loads((tmp_path / "align" / "checkpoint" / "anymal_config.json").read_text())
    assert manifest["training"]["processes"] == 2

    cfg = load_train_config(RECIPES / f"{family}-lora.yaml", _overrides(backbones, tower, data, tmp_path / "lora")
                            + [f"init_from={tmp_path / 'align' / 'checkpoint'}"])
    assert cfg.stage == "instruct" and cfg.model.lora is not None
    result = train(cfg, progress=False, log=lambda *_: None)
    assert result.steps == 2 and result.skipped == 0
    model = AnyMAL.from_pretrained(result.checkpoint)
    assert isinstance(model.chat("What is it?", image=str(images[0]), max_new_tokens=3), str)
    if family == "anymal-siglip":
        assert "int4" in (tmp_path / "lora" / "plan.txt").read_text()  # the frozen LLM was held in 4 bits
