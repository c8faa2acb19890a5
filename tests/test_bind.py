"""ImageBind-LLM mechanics on tiny backbones: zero-init identity, gate gradients, every-layer injection,
the bind stage's InfoNCE, stage plans, the FAISS visual cache vs brute force, checkpoints, retrieval."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
import yaml

from anymal import AnyMAL
from anymal.model.visual_cache import VisualCache
from anymal.train.visual_cache import build_visual_cache
from anymal.model.injection import decoder_layers
from anymal.config import ModalityConfig, load_train_config
from anymal.errors import ConfigError
from anymal.train.loop import train
from anymal.train.stages import apply_stage, plan_rows
from conftest import tiny_config

ANSWERS = ["A red square.", "A green square.", "A blue square.", "A yellow square."]


def bind_model(llm_dir, with_audio: bool = True, seed: int = 0) -> AnyMAL:
    cfg = tiny_config(llm_dir, projector="bind", num_tokens=None)
    if with_audio:
        cfg.modalities["audio"] = ModalityConfig(encoder="tiny-seq", projector="bind", num_tokens=None, width=32)
    cfg.bind.width, cfg.bind.blocks = 32, 1
    torch.manual_seed(seed)
    return AnyMAL.from_config(cfg)


def conv(image, answer="A frog.", question="What is this?"):
    return [{"role": "user", "content": [{"type": "image", "image": str(image)}, {"type": "text", "text": question}]},
            {"role": "assistant", "content": answer}]


def batch_of(model, images, answers=ANSWERS):
    return model.processor.collate([model.encode_conversation(conv(p, a)) for p, a in zip(images, answers)])


def test_bind_inputs_take_no_slots_and_rows_are_tracked(tiny_llm_dir, images):
    m = bind_model(tiny_llm_dir)
    b = batch_of(m, images[:3])
    assert b.slots == {} and b.rows == {"image": [0, 1, 2]}
    text_only = m.processor.encode([{"role": "user", "content": "\nWhat is this?"},
                                    {"role": "assistant", "content": "A red square."}])
    assert m.encode_conversation(conv(images[0], "A red square.")).input_ids == text_only.input_ids
    assert m.prepare([conv(images[0])[:1]]).counts == [{"text": len(m.prepare([conv(images[0])[:1]]).embeds[0]),
                                                        "image": 0}]


def test_untrained_injection_is_exactly_the_original_llm(tiny_llm_dir, images):
    m = bind_model(tiny_llm_dir)
    b = batch_of(m, images)
    with torch.no_grad():
        ours = m(type(b)(b.input_ids, b.attention_mask, None, b.slots, b.media, None, b.rows)).logits
        plain = m.llm.model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits
    assert m.bind_vectors(b) is not None  # the injection did run, with non-zero network outputs
    assert torch.equal(ours, plain)
    # generation too: the untrained bind model answers exactly what the bare LLM answers to the text
    text = [{"role": "user", "content": "\nWhat is this?"}]
    assert m.generate([conv(images[0])[:1]]) == m.generate([text])
    assert all(not layer._forward_pre_hooks for layer in decoder_layers(m.llm.model))  # hooks removed


def test_gates_get_gradients_first_then_the_bind_network(tiny_llm_dir, images):
    m = bind_model(tiny_llm_dir)
    apply_stage(m, "bind-inject")
    m(batch_of(m, images)).loss.backward()
    assert (m.bind.gates.grad.abs() > 0).all()
    assert all(p.grad is None or not p.grad.any() for p in m.bind.network.parameters())  # gate 0 blocks them
    assert all(p.grad is None for p in m.projectors.parameters())  # heads are frozen in bind-inject
    with torch.no_grad():
        m.bind.gates.fill_(0.1)
    m.zero_grad()
    m(batch_of(m, images)).loss.backward()
    assert m.bind.network[0].weight.grad.abs().sum() > 0


def test_injection_adds_gate_times_network_output_to_every_token_of_each_layer(tiny_llm_dir, images):
    m = bind_model(tiny_llm_dir)
    b = batch_of(m, images[:2])
    with torch.no_grad():
        m.bind.gates.copy_(torch.tensor([0.7, 0.0]))  # layer 0's input is the embedding: checkable by hand
        v, present = m.bind_vectors(b)
        delta = 0.7 * m.bind.network(v)
        ours = m(type(b)(b.input_ids, b.attention_mask, None, b.slots, b.media, None, b.rows)).logits
        by_hand = m.llm.model(inputs_embeds=m.llm.embed(b.input_ids) + delta[:, None, :],
                              attention_mask=b.attention_mask).logits
        assert torch.allclose(ours, by_hand, atol=1e-5)
        m.bind.gates.copy_(torch.tensor([0.0, 0.7]))  # a later layer changes the output too
        later = m(type(b)(b.input_ids, b.attention_mask, None, b.slots, b.media, None, b.rows)).logits
    plain = m.llm.model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits
    assert not torch.allclose(later, plain, atol=1e-4) and not torch.allclose(later, ours, atol=1e-4)


def test_rows_without_bind_inputs_are_left_alone(tiny_llm_dir, images):
    m = bind_model(tiny_llm_dir)
    with torch.no_grad():
        m.bind.gates.fill_(0.5)
    text = [{"role": "user", "content": "\nWhat is this?"}]
    together = m.generate([conv(images[0])[:1], text], )
    m.bind.gates.data.zero_()
    assert together[1] == m.generate([text])[0]


def test_bind_objective_is_symmetric_infonce_over_each_modality(tiny_llm_dir, images):
    from anymal.model.bind_objective import caption_vectors
    from anymal.objectives import info_nce

    m = bind_model(tiny_llm_dir)
    b = batch_of(m, images, ["A red square.", "A red square.", "A blue square.", "A duck."])
    out = m(b, "bind")
    z = m.projectors["image"].embed(m.encode_media(b.media["image"]))
    t = caption_vectors(["A red square.", "A red square.", "A blue square.", "A duck."])
    want = info_nce(z, t, torch.tensor([0, 0, 1, 2]), m.projectors["image"].logit_scale.exp())
    assert torch.allclose(out.loss, want) and out.num_labels == 4 == m.count_targets(b, "bind")


def test_stage_plans_for_bind_and_bind_inject(tiny_llm_dir):
    m = bind_model(tiny_llm_dir)
    apply_stage(m, "bind")
    flags = {name: flag for name, flag, *_ in plan_rows(m)}
    assert flags == {"llm": "frozen", "encoders.image": "frozen", "encoders.audio": "frozen",
                     "projectors.image": "yes", "projectors.audio": "yes", "bind": "frozen"}
    apply_stage(m, "bind-inject")
    flags = {name: flag for name, flag, *_ in plan_rows(m)}
    assert flags["bind"] == "yes" and flags["projectors.image"] == "frozen" and flags["llm"] == "frozen"
    plain = AnyMAL.from_config(tiny_config(tiny_llm_dir))
    with pytest.raises(ConfigError, match="no component 'bind'"):
        apply_stage(plain, "bind-inject")


def _recipe(tmp_path, llm_dir, images, stage, **over):
    recs = [{"image": str(p), "conversations": [{"from": "human", "value": "<image>\nWhat is this?"},
                                                {"from": "gpt", "value": a}]} for p, a in zip(images, ANSWERS)]
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in recs * 2) + "\n")
    r = {"model": {"llm": {"id": str(llm_dir), "max_length": 256}, "bind": {"width": 32, "blocks": 1},
                   "modalities": {"image": {"encoder": "tiny-cnn", "projector": "bind", "num_tokens": None, "width": 32}}},
         "data": {"train": str(data)}, "stage": stage,
         "optim": {"lr": 1e-2, "max_steps": 25, "batch_size": 8, "warmup_steps": 1},
         "output_dir": str(tmp_path / stage), "log_every": 1, "eval_every": 0, **over}
    f = tmp_path / f"{stage}.yaml"
    f.write_text(yaml.safe_dump(r))
    return f


def test_bind_then_bind_inject_train_from_the_cli_recipe_and_round_trip(tmp_path, images, tiny_llm_dir, monkeypatch):
    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path / "cache"))
    space = train(load_train_config(_recipe(tmp_path, tiny_llm_dir, images, "bind")), progress=False, log=lambda *_: None)
    assert space.final_loss < 0.7 * space.first_loss
    inject = train(load_train_config(_recipe(tmp_path, tiny_llm_dir, images, "bind-inject",
                                             init_from=str(space.checkpoint))), progress=False, log=lambda *_: None)
    assert inject.final_loss < inject.first_loss
    m = AnyMAL.from_pretrained(inject.checkpoint)
    assert m.stage == "bind-inject" and [r["stage"] for r in m.lineage] == ["bind", "bind-inject"]
    assert m.bind.gates.abs().sum() > 0  # the gates left zero
    first = AnyMAL.from_pretrained(space.checkpoint)
    b = batch_of(m, images)
    assert torch.equal(m.bind_vectors(b)[0], first.bind_vectors(b)[0])  # heads stayed frozen in bind-inject
    # the visual cache is written into the checkpoint and found again by from_pretrained
    cache = build_visual_cache(m, tmp_path / "train.jsonl", progress=False)
    assert len(cache) == 8 and cache.captions[:4] == ANSWERS
    cache.save(inject.checkpoint)
    again = AnyMAL.from_pretrained(inject.checkpoint)
    assert torch.allclose(again.visual_cache.vectors, cache.vectors, atol=1e-6) and again.visual_cache.captions == cache.captions
    bad = load_train_config(_recipe(tmp_path, tiny_llm_dir, images, "bind"),
                            ["model.modalities.image.projector=mlp", "model.modalities.image.num_tokens=4"])
    with pytest.raises(ConfigError, match="no modality has `projector: bind`"):
        train(bad, progress=False, log=lambda *_: None)


def test_visual_cache_search_equals_brute_force_and_blends_as_documented():
    g = torch.Generator().manual_seed(0)
    vecs = F.normalize(torch.randn(500, 16, generator=g), dim=-1)
    cache = VisualCache(vecs, [f"c{i}" for i in range(500)])
    q = F.normalize(torch.randn(20, 16, generator=g), dim=-1)
    sims, idx = cache.search(q, 7)
    brute = torch.topk(q @ vecs.T, 7)
    assert torch.equal(idx, brute.indices) and torch.allclose(sims, brute.values, atol=1e-5)
    w, tau = 0.3, 0.1
    mix = (torch.softmax(brute.values / tau, -1)[..., None] * vecs[brute.indices]).sum(1)
    assert torch.allclose(cache.blend(q, 7, w, tau), F.normalize((1 - w) * q + w * mix, dim=-1), atol=1e-5)
    assert torch.equal(cache.blend(q, 7, 0.0, tau), q)
    assert torch.allclose(cache.blend(vecs[:3], 1, 1.0, tau), vecs[:3], atol=1e-5)  # own nearest neighbour


def test_visual_cache_only_touches_non_image_inputs(tiny_llm_dir, images, tmp_path):
    m = bind_model(tiny_llm_dir)
    sig = tmp_path / "s.npy"
    import numpy as np

    np.save(sig, np.sin(np.arange(40, dtype=np.float32)))
    c = [{"role": "user", "content": [{"type": "audio", "audio": str(sig)}, {"type": "text", "text": "What?"}]},
         {"role": "assistant", "content": "A tone."}]
    b = m.processor.collate([m.encode_conversation(conv(images[0])), m.encode_conversation(c)])
    before = m.bind_vectors(b)[0]
    m.visual_cache = VisualCache(F.normalize(torch.randn(10, 384), dim=-1), [str(i) for i in range(10)])
    after = m.bind_vectors(b)[0]
    assert torch.equal(after[0], before[0]) and not torch.allclose(after[1], before[1])


def test_bind_retrieval_scores_a_perfect_and_a_shuffled_head(tiny_llm_dir, tmp_path, monkeypatch, images):
    """The retrieval evaluation itself: R@1 = 1 when every input lands on its caption's vector, ~chance
    when the vectors are shuffled."""
    from anymal.eval import retrieval
    from anymal.text_embed import embed_texts

    recs = []
    for k, (p, a) in enumerate(zip(images, ANSWERS)):
        recs.append({"images": [str(p)], "meta": {"caption": a},
                     "messages": [{"role": "user", "content": "<image>What is this?"}, {"role": "assistant", "content": a}]})
    man = tmp_path / "test.jsonl"
    man.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    monkeypatch.setitem(retrieval.PAIRS, "image-text", (retrieval.Side("image", str(man)), retrieval.Side("text"), None))
    m = bind_model(tiny_llm_dir, with_audio=False)
    truth = embed_texts(ANSWERS)
    order = {str(p): i for i, p in enumerate(images)}
    perm = [1, 2, 3, 0]

    def perfect(parts_feats):  # the features of image i -> caption i's vector
        return truth[[order[str(p.source)] for p in current]]

    current = []
    real_media = retrieval._media_side

    def spy(model, side, limit):
        from anymal.data.jsonl import read_jsonl
        samples, _ = read_jsonl(side.manifest, [side.modality])
        current[:] = [model.processor.media(s.messages)[0] for s in samples]
        return real_media(model, side, limit)

    monkeypatch.setattr(retrieval, "_media_side", spy)
    monkeypatch.setattr(m.projectors["image"], "embed", perfect)
    rows = retrieval.bind_retrieval(m, tmp_path / "out", pairs=["image-text"])["rows"]
    assert [r["R@1"] for r in rows] == [1.0, 1.0] and rows[0]["chance_R@1"] == 0.25
    monkeypatch.setattr(m.projectors["image"], "embed", lambda f: truth[[perm[order[str(p.source)]] for p in current]])
    rows = retrieval.bind_retrieval(m, tmp_path / "out", pairs=["image-text"])["rows"]
    assert [r["R@1"] for r in rows] == [0.0, 0.0]
    assert (tmp_path / "out" / "retrieval.png").is_file() and "| image->text | 4 | 4 |" in (tmp_path / "out" / "results.md").read_text()


def test_eval_cache_flags_need_a_bind_model_with_a_cache(tiny_llm_dir, tmp_path, capsys):
    from anymal.cli import main

    plain = AnyMAL.from_config(tiny_config(tiny_llm_dir))
    plain.save_pretrained(tmp_path / "plain")
    bound = bind_model(tiny_llm_dir)
    bound.save_pretrained(tmp_path / "bound")
    assert main(["eval", "--task", "image-caption", "--model", str(tmp_path / "plain"), "--cache-weight", "0.5"]) == 2
    assert "apply to ImageBind-LLM models" in capsys.readouterr().err
    assert main(["eval", "--task", "image-caption", "--model", str(tmp_path / "bound"), "--cache-weight", "0.5"]) == 2
    assert "anymal bind-cache" in capsys.readouterr().err


def test_text_only_bind_training_uses_noised_captions_not_inputs(tmp_path, images, tiny_llm_dir, monkeypatch):
    """bind_text_noise: while training, a row's bind vector is its caption's (noised) MiniLM vector;
    validation and inference use the inputs' bind heads."""
    from anymal.model.bind_objective import caption_vectors

    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path / "cache"))
    m = bind_model(tiny_llm_dir)
    b = batch_of(m, images)
    m.bind_text_noise = 0.0
    v, present = m.bind_vectors(b)
    assert torch.allclose(v, caption_vectors(ANSWERS), atol=1e-6) and present.all()
    m.eval()
    assert torch.allclose(m.bind_vectors(b)[0], m.projectors["image"].embed(m.encode_media(b.media["image"])), atol=1e-5)
    cfg = load_train_config(_recipe(tmp_path, tiny_llm_dir, images, "bind-inject"), ["bind_text_noise=0.05",
                                                                                   f"data.val={tmp_path / 'train.jsonl'}"])
    res = train(cfg, progress=False, log=lambda *_: None)
    assert res.final_loss < res.first_loss and res.val_loss is not None
    with pytest.raises(ConfigError, match="applies to stage bind-inject"):
        train(load_train_config(_recipe(tmp_path, tiny_llm_dir, images, "bind"), ["bind_text_noise=0.05"]),
              progress=False, log=lambda *_: None)
