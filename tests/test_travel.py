"""Checkpoints that travel (issue 35): config.json with a model_type, a model card, LoRA layers in PEFT's
format that peft itself loads on the base LLM, push_to_hub."""
import json

import pytest
import torch

from anymal import AnyMAL
from anymal.config import LLMConfig, LoRAConfig, ModalityConfig, ModelConfig


def _lora_model(llm_dir):
    torch.manual_seed(0)
    model = AnyMAL.from_config(ModelConfig(
        llm=LLMConfig(id=str(llm_dir), max_length=256),
        modalities={"image": ModalityConfig(encoder="tiny-cnn", projector="mlp", num_tokens=4)},
        lora=LoRAConfig(rank=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])))
    with torch.no_grad():  # LoRA's B starts at zero: give it weight so the layers change the answer
        for name, p in model.llm.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return model


def test_lora_layers_are_saved_in_peft_format_and_peft_loads_them(tiny_llm_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = _lora_model(tiny_llm_dir)
    out = model.save_pretrained(tmp_path / "ckpt", stage="instruct")
    peft_cfg = json.loads((out / "lora" / "adapter_config.json").read_text())
    assert peft_cfg["peft_type"] == "LORA" and peft_cfg["r"] == 4 and (out / "lora" / "adapter_model.safetensors").is_file()
    base = AutoModelForCausalLM.from_pretrained(tiny_llm_dir).eval()
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    plain = base(ids).logits
    loaded = PeftModel.from_pretrained(base, str(out / "lora")).eval()
    with torch.no_grad():
        theirs, ours = loaded(ids).logits, model.llm.model(ids).logits
    torch.testing.assert_close(theirs, ours)
    assert not torch.allclose(theirs, plain)  # the layers do change the LLM
    assert AnyMAL.from_pretrained(out).stage == "instruct"  # and anymal still loads its own checkpoint


def test_config_json_and_model_card(tiny_model, tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "eval.json").write_text(json.dumps({"image-caption": {"object_named": 0.5}}))
    out = tiny_model.save_pretrained(tmp_path / "ckpt")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "anymal" and config["modalities"]["image"]["encoder"] == "tiny-cnn"
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: anymal") and "| image projector | mlp, 4 tokens" in card
    assert "| image-caption | object_named | 0.500 |" in card and "## Licences" in card
    (out / "README.md").write_text("# my own card\n")
    tiny_model.save_pretrained(out)
    assert (out / "README.md").read_text() == "# my own card\n"  # a card the user wrote is kept
    assert not (out / "lora").exists()  # no LoRA layers, no PEFT folder


def test_push_to_hub_uploads_the_saved_folder(tiny_model, monkeypatch):
    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            calls.append(("create", repo_id, kw))

        def upload_folder(self, repo_id, folder_path, **kw):
            from pathlib import Path

            calls.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))
            return type("Info", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    assert tiny_model.push_to_hub("me/tiny", private=True) == "https://huggingface.co/me/tiny/commit/abc"
    assert calls[0] == ("create", "me/tiny", {"private": True, "exist_ok": True})
    assert {"README.md", "config.json", "adapters.safetensors", "anymal_config.json"} <= set(calls[1][2])


def _saved_bytes_and_loss(model, batch):
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(batch)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return sum(saved), float(out.loss.detach()), grads


def test_gradient_checkpointing_keeps_the_loss_and_saves_less(tiny_llm_dir, images):
    from anymal.train.setup import enable_checkpointing
    from anymal.train.stages import apply_stage

    msgs = [{"role": "user", "content": [{"type": "image", "path": str(images[0])},
                                         {"type": "text", "text": "What is this? Describe it in detail please."}]},
            {"role": "assistant", "content": "A red square on a white page, with nothing else in it at all."}]
    runs = []
    for checkpointing in (False, True):
        model = _lora_model(tiny_llm_dir)
        apply_stage(model, "instruct", [], [])
        model.train()
        if checkpointing:
            enable_checkpointing(model.llm.model)
        batch = model.processor.collate([model.encode_conversation(msgs)], padding_side="right")
        runs.append(_saved_bytes_and_loss(model, batch))
    (plain_bytes, plain_loss, plain_grads), (ckpt_bytes, ckpt_loss, ckpt_grads) = runs
    assert ckpt_loss == pytest.approx(plain_loss, rel=1e-6) and ckpt_bytes < 0.7 * plain_bytes, (plain_bytes, ckpt_bytes)
    assert plain_grads.keys() == ckpt_grads.keys() and any("lora_B" in n for n in plain_grads)
    for name in plain_grads:
        torch.testing.assert_close(ckpt_grads[name], plain_grads[name], rtol=1e-4, atol=1e-6)


def test_gradient_checkpointing_is_refused_where_no_llm_weight_trains(tiny_llm_dir, tmp_path):
    import yaml

    from anymal.config import load_train_config
    from anymal.errors import ConfigError
    from anymal.train.setup import check_plan

    (tmp_path / "r.yaml").write_text(yaml.safe_dump({"model": {"llm": {"id": str(tiny_llm_dir)}}, "stage": "align",
                                                     "gradient_checkpointing": True, "data": {"train": "x.jsonl"}}))
    with pytest.raises(ConfigError, match="gradient_checkpointing applies where LLM weights train"):
        check_plan(load_train_config(tmp_path / "r.yaml"), print)


def test_report_to_wandb_and_mlflow_offline(tmp_path, images, tiny_llm_dir, monkeypatch):
    """Recorded calls (neither package is installed here): each tracker gets every logged row at its step,
    offline by default, and is closed; a tracker whose package is missing fails before the model loads."""
    import sys
    import types

    import yaml

    from anymal.config import load_train_config
    from anymal.errors import ConfigError
    from anymal.train.loop import train

    calls = []
    run = types.SimpleNamespace(log=lambda m, step: calls.append(("wandb.log", step, sorted(m))),
                                finish=lambda: calls.append(("wandb.finish",)))
    wandb = types.SimpleNamespace(init=lambda **kw: calls.append(("wandb.init", kw["mode"], kw["dir"])) or run)
    mlflow = types.SimpleNamespace(
        set_tracking_uri=lambda uri: calls.append(("mlflow.uri", uri)),
        start_run=lambda run_name: calls.append(("mlflow.start", run_name)),
        log_params=lambda p: calls.append(("mlflow.params", p["optim.max_steps"])),
        log_metrics=lambda m, step: calls.append(("mlflow.log", step, sorted(m))),
        end_run=lambda: calls.append(("mlflow.end",)))
    rec = {"image": str(images[0]), "conversations": [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "Red."}]}
    (tmp_path / "t.jsonl").write_text(json.dumps(rec) + "\n")
    recipe = {"model": {"llm": {"id": str(tiny_llm_dir)}, "modalities": {"image": {"encoder": "tiny-cnn", "num_tokens": 4}}},
              "data": {"train": str(tmp_path / "t.jsonl")}, "optim": {"max_steps": 4, "batch_size": 1, "warmup_steps": 1},
              "output_dir": str(tmp_path / "run"), "log_every": 2, "report_to": ["tensorboard", "wandb", "mlflow"]}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed: refused up front
    with pytest.raises(ConfigError, match="report_to: wandb needs the wandb package"):
        train(load_train_config(tmp_path / "r.yaml"), progress=False, log=lambda *_: None)
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    monkeypatch.setitem(sys.modules, "mlflow", mlflow)
    monkeypatch.setattr("anymal.train.trackers.importlib.util.find_spec", lambda name: object())
    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path / "cache"))
    train(load_train_config(tmp_path / "r.yaml"), progress=False, log=lambda *_: None, overwrite=True)
    assert ("wandb.init", "offline", str(tmp_path / "run")) in calls and calls.count(("wandb.finish",)) == 1
    assert ("mlflow.uri", (tmp_path / "run" / "mlruns").resolve().as_uri()) in calls and ("mlflow.params", "4") in calls
    logged = [c for c in calls if c[0] == "wandb.log"]
    assert [c[1] for c in logged] == [c[1] for c in calls if c[0] == "mlflow.log"] and 2 in [c[1] for c in logged]
    assert "loss" in logged[0][2] and calls[-1] in (("mlflow.end",), ("wandb.finish",))
    assert any((tmp_path / "run" / "tensorboard").iterdir())
