"""Save -> load round trip, manifest validation, Hugging Face model paths."""
import json

import pytest
import torch

from anymal import AnyMAL, GenerationSettings
from anymal.errors import CheckpointError, ManifestMismatchError
from conftest import save_tiny_llama, tiny_config


def test_round_trip_is_bit_exact(tiny_model, images, tmp_path):
    with torch.no_grad():
        for p in tiny_model.projectors.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # not the init: a real trained state
    tiny_model.save_pretrained(tmp_path / "ck", stage="align")
    loaded = AnyMAL.from_pretrained(tmp_path / "ck")
    a, b = tiny_model.adapter_state(), loaded.adapter_state()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    conv = [[{"role": "user", "content": [{"type": "image", "path": str(images[0])}, {"type": "text", "text": "What?"}]}]]
    s = GenerationSettings(max_new_tokens=8)
    assert tiny_model.generate(conv, s) == loaded.generate(conv, s)
    assert loaded.stage == "align"


def test_manifest_records_the_facts(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "ck", stage="align")
    m = json.loads((tmp_path / "ck" / "anymal_config.json").read_text())
    assert m["llm"]["hidden_size"] == 32
    img = m["modalities"]["image"]
    assert img["encoder"] == {"id": "tiny-cnn", "dim": 24, "num_tokens": 16, "grid": [4, 4], "preprocess": "letterbox32"}
    assert img["projector"]["kind"] == "mlp" and img["projector"]["num_tokens"] == 4
    assert m["stage"] == "align" and "anymal_version" in m and m["config"]["llm"]["id"]


def test_different_llm_is_a_clear_error_with_a_fix(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "ck", stage="align")
    other = save_tiny_llama(tmp_path / "wider", hidden=48)
    with pytest.raises(ManifestMismatchError) as e:
        AnyMAL.from_pretrained(tmp_path / "ck", llm=str(other))
    msg = str(e.value)
    assert "LLM hidden_size: checkpoint 32, loaded 48" in msg and "Fix:" in msg


def test_changed_token_count_is_reported(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "ck", stage="align")
    mf = tmp_path / "ck" / "anymal_config.json"
    m = json.loads(mf.read_text())
    m["modalities"]["image"]["projector"]["num_tokens"] = 9
    mf.write_text(json.dumps(m))
    with pytest.raises(ManifestMismatchError, match="image projector num_tokens: checkpoint 9, built 4"):
        AnyMAL.from_pretrained(tmp_path / "ck")


def test_a_lazy_load_builds_each_modality_on_first_use_and_checks_it_then(tiny_model, tmp_path, images):
    ck = tiny_model.save_pretrained(tmp_path / "ck", stage="align")
    model = AnyMAL.from_pretrained(ck, lazy=True)
    assert model.encoders.pending() == ["image"] and "image" in model.projectors and len(model.projectors) == 1
    assert model.generate([[{"role": "user", "content": "Hi"}]], GenerationSettings(max_new_tokens=3))
    assert model.encoders.pending() == ["image"]  # a text question built nothing
    conv = [{"role": "user", "content": [{"type": "image", "path": str(images[0])}, {"type": "text", "text": "What?"}]}]
    s = GenerationSettings(max_new_tokens=6)
    assert model.generate([conv], s) == tiny_model.generate([conv], s)  # built, with the checkpoint's weights
    assert model.encoders.pending() == [] and torch.equal(model.adapter_state()["projectors.image.proj.0.weight"],
                                                          tiny_model.adapter_state()["projectors.image.proj.0.weight"])
    mf = ck / "anymal_config.json"
    m = json.loads(mf.read_text())
    m["modalities"]["image"]["projector"]["num_tokens"] = 9
    mf.write_text(json.dumps(m))
    lazy = AnyMAL.from_pretrained(ck, lazy=True)  # the LLM matches: loads
    with pytest.raises(ManifestMismatchError, match="image projector num_tokens: checkpoint 9, built 4"):
        lazy.generate([conv], s)


def test_missing_or_corrupt_checkpoint_files(tiny_model, tmp_path):
    with pytest.raises(CheckpointError, match="no such directory"):
        AnyMAL.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="missing anymal_config.json"):
        AnyMAL.from_pretrained(tmp_path / "empty")
    ck = tiny_model.save_pretrained(tmp_path / "ck", stage="align")
    w = ck / "adapters.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="unreadable safetensors"):
        AnyMAL.from_pretrained(ck)


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_hf_vision_tower_by_local_path(tmp_path, tiny_llm_dir, images, family):
    """Any HF vision model dir goes through the same registry (tiny random CLIP / SigLIP towers)."""
    import transformers as tf

    common = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  image_size=32, patch_size=8)
    if family == "clip":
        tf.CLIPVisionModel(tf.CLIPVisionConfig(**common)).save_pretrained(tmp_path / family)
        proc = tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    else:
        tf.SiglipVisionModel(tf.SiglipVisionConfig(**common)).save_pretrained(tmp_path / family)
        proc = tf.SiglipImageProcessor(size={"height": 32, "width": 32})
    proc.save_pretrained(tmp_path / family)
    config = tiny_config(tiny_llm_dir)
    config.modalities["image"].encoder = str(tmp_path / family)
    model = AnyMAL.from_config(config)
    enc = model.encoders["image"]
    assert (enc.dim, enc.num_tokens, enc.grid) == (32, 16, (4, 4))  # CLIP's CLS dropped: 4x4 patches
    assert isinstance(model.chat("What?", image=str(images[0]), max_new_tokens=3), str)


def test_gemma_style_scaled_embeddings_set_projector_scale(tmp_path):
    """Gemma multiplies embeddings by sqrt(hidden); projected tokens must come out at that scale."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from anymal.llm.backbone import _from_dir
    from conftest import make_tokenizer

    tok = make_tokenizer()
    cfg = Gemma3TextConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=32, pad_token_id=tok.pad_token_id)
    Gemma3ForCausalLM(cfg).save_pretrained(tmp_path / "g")
    tok.save_pretrained(tmp_path / "g")
    lm = _from_dir("g", tmp_path / "g", "float32")
    raw = float(lm.model.get_input_embeddings().weight.pow(2).mean().sqrt())
    assert lm.embed_rms == pytest.approx(raw * 8.0, rel=0.05)  # sqrt(64) = 8
    model = AnyMAL(tiny_config(tmp_path / "g"), lm, {"image": __import__("anymal").encoders.load_encoder("tiny-cnn", "image")})
    out = model.projectors["image"](torch.randn(2, 16, 24))
    assert float(out.detach().pow(2).mean().sqrt()) == pytest.approx(lm.embed_rms, rel=0.05)


def test_a_loaded_lora_checkpoint_answers_in_eval_mode_through_the_fast_decoder(tiny_llm_dir, tmp_path, images):
    from anymal.config import LoRAConfig
    from anymal.llm.fast import FastLM

    cfg = tiny_config(tiny_llm_dir)
    cfg.lora = LoRAConfig(dropout=0.5)  # dropout left on at answer time would make answers random
    torch.manual_seed(0)
    ck = AnyMAL.from_config(cfg).save_pretrained(tmp_path / "ck", stage="instruct")
    model = AnyMAL.from_pretrained(ck)
    assert not any(m.training for m in model.modules())
    assert isinstance(model.llm.runner(), FastLM)  # plain LoRA layers decode fast, as peft computes them
    conv = [[{"role": "user", "content": [{"type": "image", "path": str(images[0])}, {"type": "text", "text": "What?"}]}]]
    s = GenerationSettings(max_new_tokens=8)
    first = model.generate(conv, s)
    model.llm.decoder = "transformers"
    assert model.generate(conv, s) == first
