"""Named stages and their freeze plans; LoRA instruction tuning; full fine-tuning; export --merge."""
import dataclasses
import json

import pytest
import torch
import yaml

from anymal import AnyMAL, GenerationSettings
from anymal.config import LLMConfig, LoRAConfig, ModalityConfig, ModelConfig, load_train_config
from anymal.errors import CheckpointError, ConfigError
from anymal.model.export import export_merged
from anymal.train.loop import train
from anymal.train.stages import apply_stage, plan_rows, plan_table

pytestmark = pytest.mark.lora


def _model(llm_dir, lora=True):
    torch.manual_seed(0)
    cfg = ModelConfig(llm=LLMConfig(id=str(llm_dir), max_length=256), modalities={
        "image": ModalityConfig(encoder="tiny-cnn", projector="mlp", num_tokens=4),
        "audio": ModalityConfig(encoder="tiny-seq", projector="linear", num_tokens=8)},
        lora=LoRAConfig(rank=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"]) if lora else None)
    return AnyMAL.from_config(cfg)


def _trainable(model):
    return {r[0]: r[1] for r in plan_rows(model)}


@pytest.mark.parametrize("stage, freeze, train_, expected", [
    ("align", [], [], {"llm": "frozen", "llm.lora": "frozen", "projectors.image": "yes", "projectors.audio": "yes"}),
    ("instruct-proj", [], [], {"llm": "frozen", "llm.lora": "frozen", "projectors.image": "yes"}),
    ("instruct", [], [], {"llm": "frozen", "llm.lora": "yes", "projectors.image": "yes", "projectors.audio": "yes"}),
    ("full", [], [], {"llm": "yes", "llm.lora": "yes", "projectors.image": "yes"}),
    ("instruct", ["projectors.audio"], [], {"llm.lora": "yes", "projectors.image": "yes", "projectors.audio": "frozen"}),
    ("align", [], ["encoders.audio"], {"encoders.audio": "yes", "encoders.image": "frozen", "llm.lora": "frozen"}),
])
def test_each_stage_trains_exactly_its_components(tiny_llm_dir, stage, freeze, train_, expected):
    model = _model(tiny_llm_dir)
    params = apply_stage(model, stage, freeze, train_)
    got = _trainable(model)
    assert {k: got[k] for k in expected} == expected
    assert got["encoders.image"] == "frozen" or "encoders.image" in train_
    assert sum(p.numel() for p in params) == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert "trainable" in plan_table(model).splitlines()[-1]


def test_stage_errors_name_the_fix(tiny_llm_dir):
    plain = _model(tiny_llm_dir, lora=False)
    with pytest.raises(ConfigError, match="set model.lora"):
        apply_stage(plain, "instruct")
    with pytest.raises(ConfigError, match="no component 'projectors.video'.*projectors.audio"):
        apply_stage(plain, "align", ["projectors.video"])
    with pytest.raises(ConfigError, match="unknown training stage 'pretrain'.*instruct-proj"):
        apply_stage(plain, "pretrain")
    with pytest.raises(ConfigError, match="nothing to train"):
        apply_stage(plain, "align", ["projectors"])


def _recipe(tmp_path, llm_dir, images, stage, name, **extra):
    answers = ["A red square.", "A green square.", "A blue square.", "A yellow square."]
    recs = [{"image": str(p), "conversations": [{"from": "human", "value": "<image>\nWhat is this?"},
                                                {"from": "gpt", "value": a}, {"from": "human", "value": "Sure?"},
                                                {"from": "gpt", "value": "Yes."}]} for p, a in zip(images, answers)]
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    r = {"model": {"llm": {"id": str(llm_dir), "max_length": 256},
                   "modalities": {"image": {"encoder": "tiny-cnn", "projector": "mlp", "num_tokens": 4}}},
         "data": {"train": str(data)}, "stage": stage,
         "optim": {"lr": 1e-2, "max_steps": 12, "batch_size": 4, "warmup_steps": 1},
         "output_dir": str(tmp_path / name), "log_every": 4, "eval_every": 0, **extra}
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(r))
    return load_train_config(tmp_path / f"{name}.yaml")


def test_align_then_instruct_lora_then_export_merge(tmp_path, images, tiny_llm_dir, monkeypatch):
    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path / "cache"))
    quiet = dict(progress=False, log=lambda *_: None)
    align = train(_recipe(tmp_path, tiny_llm_dir, images, "align", "align"), **quiet)
    lora = {"rank": 4, "alpha": 8.0, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    cfg = _recipe(tmp_path, tiny_llm_dir, images, "instruct", "instruct", init_from=str(align.checkpoint))
    cfg.model.lora = LoRAConfig(**lora)
    res = train(cfg, **quiet)
    assert res.final_loss < res.first_loss
    plan = (tmp_path / "instruct" / "plan.txt").read_text()
    assert any(line.split()[:2] == ["llm.lora", "yes"] for line in plan.splitlines())

    model = AnyMAL.from_pretrained(res.checkpoint)  # no flags: the manifest rebuilds the LoRA layers
    manifest = json.loads((res.checkpoint / "anymal_config.json").read_text())
    assert manifest["stage"] == "instruct" and manifest["config"]["lora"] == lora
    assert [e["stage"] for e in manifest["lineage"]] == ["align", "instruct"]
    assert any(torch.any(v != 0) for k, v in model.adapter_state().items() if "lora_B" in k)  # LoRA learned

    conv = [[{"role": "user", "content": [{"type": "image", "path": str(images[2])}, {"type": "text", "text": "What is this?"}]}]]
    s = GenerationSettings(max_new_tokens=8)
    merged_dir = export_merged(res.checkpoint, tmp_path / "merged")
    merged = AnyMAL.from_pretrained(merged_dir)
    assert merged.config.lora is None and (merged_dir / "llm" / "config.json").is_file()
    batch = model.processor.collate([model.encode_conversation(conv[0], True)], padding_side="left")
    batch = dataclasses.replace(batch, labels=None)  # logits at every position
    with torch.no_grad():
        a, b = model(batch).logits, merged(batch).logits
    assert torch.allclose(a, b, atol=1e-4)  # W + BA*alpha/r is the same function
    assert model.generate(conv, s) == merged.generate(conv, s)
    with pytest.raises(CheckpointError, match="no LoRA layers to merge"):
        export_merged(merged_dir, tmp_path / "again")


def test_full_stage_checkpoint_carries_its_llm(tmp_path, images, tiny_llm_dir, monkeypatch):
    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path / "cache"))
    res = train(_recipe(tmp_path, tiny_llm_dir, images, "full", "full"), progress=False, log=lambda *_: None)
    before = AnyMAL.from_config(_recipe(tmp_path, tiny_llm_dir, images, "full", "x").model)
    after = AnyMAL.from_pretrained(res.checkpoint)
    w0 = before.llm.model.model.layers[0].mlp.down_proj.weight
    w1 = after.llm.model.model.layers[0].mlp.down_proj.weight
    assert not torch.equal(w0, w1)  # the LLM itself trained, and the checkpoint has it
    assert json.loads((res.checkpoint / "anymal_config.json").read_text())["config"]["llm"]["id"] == "./llm"
    bad = _recipe(tmp_path, tiny_llm_dir, images, "full", "bad")
    bad.model.lora = LoRAConfig()
    with pytest.raises(ConfigError, match="remove model.lora"):
        train(bad, progress=False, log=lambda *_: None)


@pytest.mark.quantized
@pytest.mark.parametrize("bits", ["int8", "int4"])
def test_adapters_train_against_a_quantized_llm_and_load_in_full_precision(tmp_path, images, tiny_llm_dir,
                                                                           monkeypatch, bits):
    from anymal.llm.quantize import weight_bytes

    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path / "cache"))
    cfg = _recipe(tmp_path, tiny_llm_dir, images, "instruct", bits, llm_quantize=bits, llm_train_dtype="bfloat16")
    cfg.model.lora = LoRAConfig(rank=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    res = train(cfg, progress=False, log=lambda *_: None)
    assert res.final_loss < res.first_loss
    plan = (tmp_path / bits / "plan.txt").read_text()
    assert f"qint{bits[-1]}" in plan  # the table shows the quantized storage type ...
    lora_row = next(line.split() for line in plan.splitlines() if line.startswith("llm.lora"))
    assert lora_row[3] == "float32"  # ... and LoRA kept in full precision under a bf16 frozen LLM
    model = AnyMAL.from_pretrained(res.checkpoint)  # inference: the full-precision LLM
    assert "lora_A" in " ".join(model.adapter_state()) and not getattr(model.llm, "quantized", None)
    from anymal.llm import load_llm
    from anymal.llm.quantize import quantize_llm

    full, small = load_llm(str(tiny_llm_dir)), load_llm(str(tiny_llm_dir))
    quantize_llm(small, bits)
    assert weight_bytes(small.model) < weight_bytes(full.model)


@pytest.mark.quantized
def test_a_tied_head_keeps_sharing_the_bf16_embedding_table():
    """int4 logits over the vocabulary cost the most loss: a tied head stays the shared bf16 table."""
    from types import SimpleNamespace

    from transformers import LlamaConfig, LlamaForCausalLM

    from anymal.llm.quantize import quantize_llm

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=192, intermediate_size=384, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    hf = LlamaForCausalLM(cfg).eval()
    ids = torch.arange(10)[None]
    with torch.no_grad():
        ref = hf(ids).logits
    quantize_llm(SimpleNamespace(model=hf), "int4")
    head, emb = hf.get_output_embeddings(), hf.get_input_embeddings()
    assert head.weight is emb.weight and emb.weight.dtype == torch.bfloat16
    assert type(head) is torch.nn.Linear  # not a quanto QLinear
    down = hf.model.layers[0].mlp.down_proj
    assert "QLinear" in type(down).__name__  # ... while the blocks are quantized, int4 in groups of 32
    assert down.weight_group_size == 32 and down.qweight.shape == down.weight.shape
    with torch.no_grad():
        out = hf(ids).logits
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.corrcoef(torch.stack([out.flatten(), ref.flatten()]))[0, 1] > 0.9
