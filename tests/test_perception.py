"""Perception encoders as words: composed encoders, the words projector, real detector/classifier, photo data."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from anymal.config import LLMConfig, ModalityConfig, ModelConfig
from anymal.encoders.perception import ROW, PerceptionEncoder
from anymal.projectors import NAME_TOKENS
from anymal.projectors.words import Asked
from anymal.registry import ENCODERS


class TinyColourNamer(PerceptionEncoder):
    """Names the dominant colour channel of an 8x8 picture: 'red'/'green'/'blue', box = whole picture."""

    size, entries = (8, 8), 2
    labels = ["red", "green", "blue"]

    def __init__(self, name: str, modality: str):
        super().__init__(name, modality)
        self.preprocess_id = "stretch8"

    def rows(self, batch: np.ndarray) -> np.ndarray:
        out = np.zeros((len(batch), self.entries, ROW), np.float32)
        for b, img in enumerate(batch):
            out[b, 0] = [int(img.reshape(-1, 3).mean(0).argmax()) + 1, 0.9, 1, 0, 0, 1, 1, 1]
        return out  # entry 1 stays empty: "nothing"


class TinySpeller(PerceptionEncoder):
    """Writes text about a 1-D signal (as a speech recogniser would): " a duck" when it rises, else "frog"."""

    kind, entries, window = "text", 4, 64
    labels = ["frog", " a", " duck"]

    def __init__(self, name: str, modality: str):
        super().__init__(name, modality)
        self.preprocess_id = "pad64"

    def preprocess(self, item) -> torch.Tensor:
        x = torch.as_tensor(np.load(item), dtype=torch.float32)
        return torch.nn.functional.pad(x, (0, self.window - len(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(x), self.entries, ROW)
        for b, sig in enumerate(x):
            ids = [2, 3] if sig[:8].mean() < sig[8:16].mean() else [1]
            out[b, : len(ids), 0], out[b, : len(ids), 1] = torch.tensor(ids, dtype=torch.float32), 1.0
        return out


for _name, _cls in (("tiny-colours", TinyColourNamer), ("tiny-speller", TinySpeller)):
    if _name not in ENCODERS:
        ENCODERS.register(_name)(_cls)


def perceiving_config(llm_dir, video: bool = False) -> ModelConfig:
    mods = {"image": ModalityConfig(encoder="tiny-cnn", projector="mlp", num_tokens=4, perception=["tiny-colours"])}
    if video:
        mods["video"] = ModalityConfig(encoder="tiny-cnn", projector="mlp", num_tokens=8, frames=2,
                                       perception=["tiny-colours"])
    return ModelConfig(llm=LLMConfig(id=str(llm_dir), max_length=256), modalities=mods)


@pytest.fixture
def perceiving(tiny_llm_dir):
    from anymal import AnyMAL

    torch.manual_seed(0)
    return AnyMAL.from_config(perceiving_config(tiny_llm_dir))


def test_composed_encoder_keeps_each_part(perceiving, images):
    enc = perceiving.encoders["image"]
    assert enc.id == "tiny-cnn+tiny-colours" and enc.num_tokens == 16 + 2 and enc.dim == 24
    feats = enc.encode([images[0], images[2]])
    assert [tuple(f.shape) for f in feats] == [(18, 24), (18, 24)]
    torch.testing.assert_close(feats[0][:16], enc.main.encode([images[0]])[0])  # the patch part is untouched
    assert feats[0][16, 0] == 1 and feats[1][16, 0] == 3  # red picture -> label 1, blue -> 3
    assert torch.all(feats[0][17] == 0) and torch.all(feats[0][16, ROW:] == 0)  # empty entry, zero padding
    facts = perceiving.facts()["modalities"]["image"]["encoder"]
    assert [p["id"] for p in facts["parts"]] == ["tiny-cnn", "tiny-colours"] and facts["parts"][1]["labels"] == 3


def test_name_tokens_are_the_llms_own_embeddings(perceiving, images):
    proj = perceiving.projectors["image"]
    assert proj.num_tokens == 4 + 2 * (NAME_TOKENS + 1)
    feats = perceiving.encoders["image"].encode([images[0]])[0]
    out = proj(feats[None])[0]
    ids = perceiving.llm.tokenizer(" red", add_special_tokens=False)["input_ids"][:NAME_TOKENS]
    want = perceiving.llm.embed(torch.tensor(ids)).float()
    names = out[4:4 + NAME_TOKENS]
    torch.testing.assert_close(names[: len(ids)], want)  # the geometry shift starts at zero
    assert torch.all(names[len(ids):] == 0)  # name shorter than NAME_TOKENS: zero padding
    empty = out[4 + NAME_TOKENS + 1:4 + 2 * NAME_TOKENS + 1]
    assert torch.all(empty == 0)  # "nothing" has no name
    info = out[4 + NAME_TOKENS]
    assert info.norm() > 0  # the learned token with confidence, count and box


def test_perceiving_checkpoint_round_trip(perceiving, images, tmp_path):
    from anymal import AnyMAL

    with torch.no_grad():
        for p in perceiving.projectors["image"].parameters():
            p.add_(0.01 * torch.randn_like(p))
    perceiving.save_pretrained(tmp_path / "ck")
    state = json.loads((tmp_path / "ck" / "anymal_config.json").read_text())
    assert state["config"]["modalities"]["image"]["perception"] == ["tiny-colours"]
    assert not any("names" in k or k.endswith(".mask") for k in perceiving.adapter_state())  # rebuilt, not stored
    again = AnyMAL.from_pretrained(tmp_path / "ck")
    conv = [{"role": "user", "content": [{"type": "image", "path": str(images[1])}, {"type": "text", "text": "What?"}]}]
    a, b = perceiving.encode_conversation(conv, True), again.encode_conversation(conv, True)
    torch.testing.assert_close(perceiving.project("image", a.features), again.project("image", b.features))


def test_checkpoints_from_before_the_confidence_gate_and_the_question_load_unchanged(perceiving, images, tmp_path):
    from safetensors.torch import load_file, save_file

    from anymal import AnyMAL
    from anymal.errors import CheckpointError

    with torch.no_grad():
        for name, p in perceiving.projectors["image"].named_parameters():
            if ".gate." not in name and ".ask." not in name:  # trained before them: their zero init
                p.add_(0.01 * torch.randn_like(p))
    perceiving.save_pretrained(tmp_path / "ck")
    weights = tmp_path / "ck" / "adapters.safetensors"
    state = {k: v for k, v in load_file(weights).items() if ".gate." not in k and ".ask." not in k}
    save_file(state, weights)
    again = AnyMAL.from_pretrained(tmp_path / "ck")
    feats = perceiving.encoders["image"].encode([images[1]])[0][None]
    torch.testing.assert_close(perceiving.projectors["image"](feats), again.projectors["image"](feats))
    save_file({k: v for k, v in state.items() if ".info_norm." not in k}, weights)
    with pytest.raises(CheckpointError, match="missing"):  # only the gate and the question layer may be absent
        AnyMAL.from_pretrained(tmp_path / "ck")


def image_turn(path, text: str) -> dict:
    return {"role": "user", "content": [{"type": "image", "path": str(path)}, {"type": "text", "text": text}]}


def test_each_input_is_asked_the_words_of_its_own_turn(perceiving, images):
    from anymal.model.questions import turn_masks, turn_words

    conv = [image_turn(images[0], "Is it red?"), {"role": "assistant", "content": "Yes."},
            {"role": "user", "content": [{"type": "text", "text": "And this blue one,"},
                                         {"type": "image", "path": str(images[2])}, {"type": "text", "text": "what?"}]}]
    other = [image_turn(images[1], "Green?")]
    enc = [perceiving.encode_conversation(c, True) for c in (conv, other)]
    batch = perceiving.processor.collate(enc, padding_side="left")
    embeds = perceiving.llm.embed(batch.input_ids)
    counts = [perceiving.projectors["image"].count(f) for f in batch.features["image"]]
    args = (batch.input_ids, batch.attention_mask, batch.slots, perceiving.special_ids)
    rows, mask = turn_masks(*args, "image", counts)
    said = [perceiving.llm.tokenizer.decode(batch.input_ids[r][m]) for r, m in zip(rows, mask)]
    # (the processor sets each input on its own line: the newlines around its slots are words of the turn)
    assert rows.tolist() == [0, 0, 1] and said == ["user\n\nIs it red?", "user\nAnd this blue one,\n\nwhat?", "user\n\nGreen?"]
    asked = turn_words(*args, embeds, "image", counts, perceiving.llm.tokenizer.decode)
    words, cut = asked.words, asked.present  # the same words, columns no input reads left out
    assert cut.shape[1] < mask.shape[1] and cut.sum() == mask.sum()
    torch.testing.assert_close(words[cut.bool()], embeds[rows][mask].float())
    # and as phrases for WordNet kinship, without the role's name ("user" is a kind of person)
    assert asked.said[0] == {"is", "it", "red", "is it", "it red", "is it red"} and "blue one" in asked.said[1]


def test_the_question_reaches_each_entry_and_starts_silent(perceiving, images):
    proj = perceiving.projectors["image"]
    words = proj.words[0]
    feats = perceiving.encoders["image"].encode([images[0]])[0][None]  # red: entry 0 "red", entry 1 empty
    tok, embed = perceiving.llm.tokenizer, perceiving.llm.embed

    def ask(ids: list[int]):
        return Asked(embed(torch.tensor(ids))[None].float(), torch.ones(1, len(ids)))

    named = tok(" red", add_special_tokens=False)["input_ids"]
    others = [i for i in tok(" What shape is it?", add_special_tokens=False)["input_ids"] if i not in named]
    idx = feats[..., 16:, 0].round().long()
    red, other = words.asked(idx, ask(others + named)), words.asked(idx, ask(others))
    assert red[0, 0, 0] == pytest.approx(1.0, abs=1e-5) and other[0, 0, 0] < 0.99  # the question says " red"
    assert torch.all(red[0, 1] == 0) and torch.all(words.asked(idx, None) == 0)  # no entry / no question
    torch.testing.assert_close(proj(feats), proj(feats, ask(named)))  # zero-initialised: nothing changes yet
    with torch.no_grad():
        words.ask[2].weight.normal_()
    assert not torch.allclose(proj(feats, ask(others + named)), proj(feats, ask(others)))


def test_the_question_naming_a_kind_of_the_label_reaches_its_entry(perceiving, images):
    """WordNet kinship as features: the label's own kind, a broader one ("colour" for "red"), a narrower one."""
    from anymal.kinship import phrases

    words = perceiving.projectors["image"].words[0]
    feats = perceiving.encoders["image"].encode([images[0]])[0][None]  # entry 0 "red", entry 1 empty
    idx = feats[..., 16:, 0].round().long()
    words.kin = ((frozenset({"red"}), frozenset({"chromatic colour", "colour"}), frozenset({"crimson"})), None, None)
    empty = Asked(torch.zeros(1, 1, words.names.shape[-1]), torch.zeros(1, 1))
    said = [phrases(q) for q in ("Is it red?", "Any chromatic colours here?", "Is it crimson?", "Is it a dog?")]
    got = [words.asked(idx, empty._replace(said=(s,)))[0, :, 2:].tolist() for s in said]
    assert got == [[[1, 0, 0], [0, 0, 0]], [[0, 1, 0], [0, 0, 0]], [[0, 0, 1], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]]]
    words.kin = None  # a part whose labels no table knows: no kinship, nothing else changes
    assert words.asked(idx, empty._replace(said=(said[0],)))[0, :, 2:].abs().sum() == 0


def test_kinship_table_knows_breeds_kinds_and_the_two_cranes():
    """The committed WordNet table: a classifier's "beagle" is a dog; the detector's "bird" covers pigeons;
    ImageNet's two "crane"s are the bird and the machine; COCO's "kite" is the toy, ImageNet's the bird;
    how a question is put ("this image", "the second one") names no kind."""
    from anymal.encoders import load_encoder
    from anymal.kinship import kin_of, phrases, relate

    imagenet = load_encoder("efficientnet-lite3-labels", "image")
    coco = load_encoder("ssd-mobilenet-coco", "image")
    net, det = imagenet.kin, coco.kin
    cls = {n: i for i, n in enumerate(imagenet.labels)}
    assert relate(net[cls["beagle"]], phrases("Is there a dog in this image?")) == (0, 1, 0)
    assert relate(det[coco.labels.index("bird")], phrases("Do you see any pigeons?")) == (0, 0, 1)
    assert relate(det[coco.labels.index("person")], phrases("Is there a man?")) == (0, 0, 1)
    cranes = [i for i, n in enumerate(imagenet.labels) if n == "crane"]
    assert relate(net[cranes[0]], phrases("a bird?"))[1] == 1 and relate(net[cranes[1]], phrases("a machine?")) == (0, 0, 0)
    assert relate(net[cranes[1]], phrases("a lifting device?"))[1] == 1
    assert relate(det[coco.labels.index("kite")], phrases("a toy?"))[1] == 1
    assert relate(net[cls["kite"]], phrases("a bird of prey?"))[1] == 1
    assert all(relate(k, phrases("Is the second one in this image the same? Can you count them?")) == (0, 0, 0)
               for k in net + det if k is not None)
    assert imagenet.kin == kin_of("imagenet", tuple(load_encoder("efficientnet-lite3-common", "image").labels))
    with pytest.raises(ValueError, match="1000 classes"):
        kin_of("imagenet", ("tench",))


def test_confidence_gate_damps_a_name(perceiving, images):
    words = perceiving.projectors["image"].words[0]
    feats = perceiving.encoders["image"].encode([images[0]])[0][None]
    before = perceiving.projectors["image"](feats)[0, 4].clone()
    with torch.no_grad():
        words.gate.bias.fill_(-20.0)  # tanh -> -1: the name is not said at all
    after = perceiving.projectors["image"](feats)[0, 4]
    assert before.norm() > 0 and torch.allclose(after, torch.zeros_like(after), atol=1e-6)


def test_video_frames_keep_patches_then_words_in_order(tiny_llm_dir, images):
    from anymal import AnyMAL

    model = AnyMAL.from_config(perceiving_config(tiny_llm_dir, video=True))
    enc, proj = model.encoders["video"], model.projectors["video"]
    assert enc.inner.percepts[0] is model.encoders["image"].percepts[0]  # built once, read by both
    assert enc.num_tokens == 2 * 18 and proj.num_tokens == 8 + 2 * 2 * (NAME_TOKENS + 1)
    frames = torch.stack([enc.inner.preprocess(images[0]), enc.inner.preprocess(images[2])])[None]
    out = proj(enc(frames))[0]
    per = 4 + 2 * (NAME_TOKENS + 1)  # per frame: 4 patch tokens, then 2 entries
    red = model.llm.embed(torch.tensor(model.llm.tokenizer(" red", add_special_tokens=False)["input_ids"][:1]))[0]
    blue = model.llm.embed(torch.tensor(model.llm.tokenizer(" blue", add_special_tokens=False)["input_ids"][:1]))[0]
    torch.testing.assert_close(out[4], red.float())
    torch.testing.assert_close(out[per + 4], blue.float())
    with torch.no_grad():  # every frame hears the clip's question: its first entry ("red", then "blue") changes
        proj.words[0].ask[2].weight.normal_()
    ids = model.llm.tokenizer(" red", add_special_tokens=False)["input_ids"]
    heard = proj(enc(frames), Asked(model.llm.embed(torch.tensor(ids))[None].float(), torch.ones(1, len(ids))))[0]
    info = [4 + NAME_TOKENS, per + 4 + NAME_TOKENS]  # each frame's first entry's info token
    assert all(not torch.allclose(heard[i], out[i]) for i in info)
    torch.testing.assert_close(heard[:4], out[:4])  # patch tokens do not hear it


def test_words_only_projector_hands_no_patch_tokens(tiny_llm_dir, images):
    from anymal import AnyMAL
    from anymal.errors import ConfigError

    cfg = perceiving_config(tiny_llm_dir)
    cfg.modalities["image"].num_tokens = 0
    model = AnyMAL.from_config(cfg)
    proj = model.projectors["image"]
    assert proj.main is None and proj.num_tokens == 2 * (NAME_TOKENS + 1)
    feats = model.encoders["image"].encode([images[0]])[0]
    out = proj(feats[None])[0]
    red = model.llm.embed(torch.tensor(model.llm.tokenizer(" red", add_special_tokens=False)["input_ids"][:1]))[0]
    torch.testing.assert_close(out[0], red.float())  # the first token is already the first name
    assert not any(k.startswith("projectors.image.main") for k in model.adapter_state())
    with pytest.raises(ConfigError, match="perception"):
        ModalityConfig(encoder="tiny-cnn", num_tokens=0)  # nothing left to read


def test_patch_dropout_silences_whole_pictures_in_training_only(tiny_llm_dir, images):
    from anymal import AnyMAL
    from anymal.errors import ConfigError

    cfg = perceiving_config(tiny_llm_dir)
    cfg.modalities["image"].patch_dropout = 0.5
    model = AnyMAL.from_config(cfg)
    proj = model.projectors["image"]
    feats = model.encoders["image"].encode([images[0]] * 64)
    batch = torch.stack(feats)
    seen = proj.eval()(batch)
    torch.manual_seed(0)
    heard = proj.train()(batch)
    patches_zero = heard[:, :4].flatten(1).abs().sum(1) == 0
    assert 10 < int(patches_zero.sum()) < 54  # about half the pictures, each silenced whole
    torch.testing.assert_close(heard[~patches_zero], seen[~patches_zero])
    torch.testing.assert_close(heard[:, 4:], seen[:, 4:])  # the names are always heard
    assert seen[:, :4].abs().sum(-1).min() > 0
    with pytest.raises(ConfigError, match="perception"):
        ModalityConfig(encoder="tiny-cnn", patch_dropout=0.3)
    with pytest.raises(ConfigError, match="patch_dropout"):
        ModalityConfig(encoder="tiny-cnn", perception=["tiny-colours"], patch_dropout=1.0)


def test_a_transcript_is_read_as_the_llms_own_text_beside_tokens_of_any_length(tiny_llm_dir, tmp_path):
    from anymal import AnyMAL

    cfg = ModelConfig(llm=LLMConfig(id=str(tiny_llm_dir), max_length=256), modalities={"audio": ModalityConfig(
        encoder="tiny-seq", projector="linear", num_tokens=8, perception=["tiny-speller"])})
    model = AnyMAL.from_config(cfg)
    enc, proj = model.encoders["audio"], model.projectors["audio"]
    short, long = tmp_path / "short.npy", tmp_path / "long.npy"
    np.save(short, np.linspace(0, 1, 16, dtype=np.float32))  # rising: " a duck"
    np.save(long, np.linspace(1, 0, 64, dtype=np.float32))  # falling: "frog"
    feats = enc.encode([short, long])
    assert [len(f) for f in feats] == [4 + 4, 16 + 4]  # the main part keeps its valid tokens, the text all rows
    assert enc.load(short)[1] == 8 and proj.tokens_for(8) == 2 + 4 and proj.tokens_for(20) == 8 + 4
    words = proj.words[0]
    assert words.texts(feats[0][None, 4:]) == ["a duck"] and words.texts(feats[1][None, 16:]) == ["frog"]
    out = proj(feats[0][None])[0]
    text, mask = model.llm.embed_names(["a duck"], 4)
    assert out.shape == (6, model.llm.hidden_size) and mask[0].sum() >= 2
    torch.testing.assert_close(out[2:], (text[0] * mask[0, :, None]).float())  # exactly the LLM's own text
    # the LLM gets only the text's own tokens: a short transcript is not padded to `entries`
    n_text = int(mask[0].sum())
    assert proj.reads_content and proj.count(feats[0]) == 2 + n_text < proj.tokens_for(8)
    torch.testing.assert_close(model.project("audio", [feats[0], feats[0]]), torch.cat([out[:2 + n_text]] * 2))
    (manifest := tmp_path / "m.jsonl").write_text(json.dumps({"messages": [
        {"role": "user", "content": "<audio>What is said?"}, {"role": "assistant", "content": "a duck"}],
        "audios": [str(short)]}) + "\n")
    from anymal.data.dataset import prepare
    from anymal.data.jsonl import SkipReport, read_jsonl

    samples = read_jsonl(manifest, ["audio"])[0]
    uncached = prepare(samples, model, None, "fail", SkipReport(), progress=False)[0].encoded
    cached = model.encode_conversation(samples[0].messages)
    assert uncached.slots == cached.slots and uncached.slots.count("audio") == 2 + n_text
    assert isinstance(model.chat("What is said?", audio=str(short), max_new_tokens=3), str)  # end to end
    cfg.modalities["audio"].num_tokens = 0  # the transcript alone, whatever the clip's length
    text_only = AnyMAL.from_config(cfg).projectors["audio"]
    assert text_only.tokens_for(8) == text_only.tokens_for(20) == 4 and text_only(feats[0][None]).shape[1] == 4


def test_perception_row_validation_of_geometry():
    from anymal.projectors.words import geometry

    g = geometry(torch.tensor([[3.0, 0.8, 3.0, 0.1, 0.2, 0.5, 0.6, 0.16]]))
    torch.testing.assert_close(g, torch.tensor([[0.8, 0.75, 0.1, 0.2, 0.5, 0.6, 0.16]]))


# ---- the real models and the real photos -------------------------------------------------------
@pytest.fixture(scope="module")
def gcompris_photos():
    from anymal.data.builders.gcompris import RCC_DIR, find_photos

    if not RCC_DIR.is_dir():
        pytest.skip("gcompris-qt-data is not installed (scripts/install.sh installs it)")
    return {p.key: p for p in find_photos()}


def photo(photos: dict, suffix: str):
    return next(p for k, p in photos.items() if k.endswith(suffix))


@pytest.mark.integration
def test_real_detector_and_classifier_name_real_photos(gcompris_photos, capfd):
    import io

    from PIL import Image

    from anymal.encoders import load_encoder

    det, cls = load_encoder("ssd-mobilenet-coco", "image"), load_encoder("efficientnet-lite3-labels", "image")
    giraffe = Image.open(io.BytesIO(photo(gcompris_photos, "world_animals/resource/animals/giraffe.webp").data))
    bison = Image.open(io.BytesIO(photo(gcompris_photos, "bison.webp").data))
    rows = det.encode([giraffe, bison])
    assert det.labels[int(rows[0][0, 0]) - 1] == "giraffe" and rows[0][0, 1] > 0.5
    assert 0 <= rows[0][0, 3] < rows[0][0, 5] <= 1  # a box in picture coordinates
    top = cls.encode([bison])[0]
    assert cls.labels[int(top[0, 0]) - 1] == "bison" and top[0, 1] >= top[1, 1] >= top[2, 1]
    assert "XNNPACK" not in capfd.readouterr().err  # TF-Lite's INFO line is kept off the console
    common = load_encoder("efficientnet-lite3-common", "image")  # same rows, curated common names
    torch.testing.assert_close(common.encode([bison])[0], top)
    assert len(common.labels) == 1000 and common.labels[296] == "polar bear" and cls.labels[296] == "ice bear"
    assert common.labels[348] == "ram" and not any("(" in n for n in common.labels)


def test_gcompris_photos_have_names_and_licences(gcompris_photos):
    assert len(gcompris_photos) >= 200
    horse = photo(gcompris_photos, "farm_animals/resource/animals/horse.webp")
    assert horse.names == ["horse"] and horse.text and "CC0" in horse.licence
    assert horse.name == "horse"  # an animal's board title ("Horse") is not a proper name: "a horse"
    liberty = next(p for p in gcompris_photos.values() if p.title == "Statue of Liberty")
    assert liberty.name == "Statue of Liberty" and liberty.category == "monument"
    assert photo(gcompris_photos, "screwDriver2.webp").names == ["screwdriver"]


def test_photo_splits_share_no_photo_near_copy_or_held_out_kind(gcompris_photos, tmp_path):
    from PIL import Image

    from anymal.data.builders.photos import DUP_BITS, build_photos, dhash

    stats = build_photos(tmp_path, photo_variants=1, pairs=1, counts=1, progress=False)
    assert stats["skipped"] == 0 and stats["photos"]["test"] >= 20 and stats["photos"]["test-kinds"] >= 10
    assert not set(stats["kinds"]["test-kinds"]) & set(stats["kinds"]["train"])
    rows = {s: [json.loads(line) for line in open(tmp_path / f"{s}.jsonl")] for s in ("train", "test", "test-kinds")}
    sources = {s: {r["meta"]["source"] for r in rs if r["meta"]["task"] == "name"} for s, rs in rows.items()}
    assert not sources["train"] & sources["test"]
    hashes = {s: [int(r["meta"]["dhash"], 16) for r in rs if r["meta"]["task"] == "name"] for s, rs in rows.items()}
    assert all(abs(int(r["meta"]["dhash"], 16).bit_count() - dhash(Image.open(tmp_path / r["images"][0])).bit_count()) < 8
               for r in rows["test"] if r["meta"]["task"] == "name")  # the hash is the stored photo's
    closest = min(bin(a ^ b).count("1") for a in hashes["train"] for b in hashes["test"])
    assert closest > DUP_BITS
    tasks = {r["meta"]["task"] for r in rows["test"]}
    assert tasks == {"name", "describe", "side", "what-side", "there", "count"}
    assert all(r["meta"]["licence"] for rs in rows.values() for r in rs)


def test_photo_judges():
    from anymal.eval.tasks import Row, get_task

    named, layout = get_task("photo-object").judge, get_task("photo-layout").judge
    assert named(Row("A photo of pliers.", "", {"names": ["pliers", "plier"]}), [])["object_named"]
    assert not named(Row("A hammer.", "", {"names": ["pliers"]}), [])["object_named"]
    side = {"task": "what-side", "answer": "left", "names": ["cat"], "left": ["cat"], "right": ["dog"]}
    assert layout(Row("A cat.", "", side), [])["correct"]
    assert not layout(Row("A cat and a dog.", "", side), [])["correct"]  # naming both is no answer
    count = {"task": "count", "answer": "three"}
    assert layout(Row("Three.", "", count), [])["correct"] and not layout(Row("Three or four.", "", count), [])["correct"]
    assert layout(Row("No, there is not.", "", {"task": "there", "answer": "no"}), [])["correct"]


def test_photo_videos_keep_the_photo_splits(gcompris_photos, tmp_path):
    import av

    from anymal.data.builders.photo_video import build_photo_video
    from anymal.data.builders.photos import RCC_DIR, load_split_photos

    stats = build_photo_video(tmp_path, limit=2, train_clips=2, progress=False)
    assert stats["clips"] == {"train": 4, "val": 2, "test": 2, "test-kinds": 2} and stats["skipped"] == 0
    photos, _, _, splits, _ = load_split_photos(RCC_DIR, 0.1, 0.2, 0.12)
    split_of = {f"gcompris:{p.key}": s for p, s in zip(photos, splits)}
    for split in ("train", "test", "test-kinds"):
        rows = [json.loads(line) for line in open(tmp_path / f"{split}.jsonl")]
        assert {split_of[r["meta"]["source"]] for r in rows} == {split}
        assert {r["meta"]["task"] for r in rows} == {"caption", "direction", "object", "video-what", "video-yesno",
                                                     "video-describe"}
        caption = next(r for r in rows if r["meta"]["task"] == "caption")["messages"][1]["content"]
        assert caption.endswith(f"from {rows[0]['meta']['direction']}.")
    with av.open(str(tmp_path / rows[0]["videos"][0])) as c:
        assert c.streams.video[0].frames == 16 and not c.streams.audio


@pytest.mark.integration
def test_perception_models_own_answers_are_the_baseline(gcompris_photos, tmp_path):
    import io

    from PIL import Image

    from anymal.data.jsonl import read_jsonl
    from anymal.eval.tasks import get_task

    lines = []
    for name, suffix in (("giraffe", "world_animals/resource/animals/giraffe.webp"), ("bison", "bison.webp")):
        Image.open(io.BytesIO(photo(gcompris_photos, suffix).data)).convert("RGB").save(tmp_path / f"{name}.jpg")
        lines.append(json.dumps({"messages": [{"role": "user", "content": "<image>What is this?"},
                                              {"role": "assistant", "content": f"A {name}."}],
                                 "images": [f"{name}.jpg"], "meta": {"task": "name", "names": [name]}}))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    samples, _ = read_jsonl(tmp_path / "m.jsonl", ["image"])
    out = get_task("photo-object").baseline(samples, ["", ""], False)
    # the detector knows giraffes (COCO) but calls the bison a cow; ImageNet has bison but no giraffe
    assert out["ssd-mobilenet-coco top label"]["object_named"] == 0.5
    assert out["efficientnet-lite3-labels top label"]["object_named"] == 0.5
    assert out["fixed rule (detector if >= 0.5, else classifier)"]["object_named"] >= 0.5
    assert out["perception oracle (any name it gives)"]["object_named"] == 1.0  # each is named by one of them


def test_sides_reach_the_main_part_of_a_composed_encoder_and_a_sweep_puts_them_back(tmp_path, tiny_llm_dir):
    """`sides` resize what the main part reads (the perception parts keep their own input size), the
    composed and video ids follow it, and a `--sides` sweep leaves the model as it found it."""
    from PIL import Image

    from anymal import AnyMAL
    from anymal.encoders import load_encoder
    from anymal.errors import ConfigError
    from anymal.eval.resolution import resolution_sweep

    enc = load_encoder("efficientnet-lite0", "image", sides=[60], perception=["tiny-colours"])
    assert enc.main.sides == (60,) and enc.preprocess_id.endswith("|sides=60 + stretch8")
    clip = load_encoder("efficientnet-lite0", "video", frames=2, sides=[90], perception=["tiny-colours"])
    assert clip.inner.main.sides == (90,) and "sides=90 + stretch8|uniform2f" in clip.preprocess_id
    with pytest.raises(ConfigError, match="resizable image encoders only"):
        load_encoder("tiny-cnn", "image", sides=[60], perception=["tiny-colours"])
    for modality in ("image", "video"):  # raw patches are made per picture: nothing can batch them
        with pytest.raises(ConfigError, match="pixel-patches makes features per"):
            load_encoder("pixel-patches", modality, perception=["tiny-colours"] if modality == "image" else None)

    cfg = perceiving_config(tiny_llm_dir)
    cfg.modalities["image"] = ModalityConfig(encoder="efficientnet-lite0", projector="mlp", num_tokens=4,
                                             perception=["tiny-colours"])
    model = AnyMAL.from_config(cfg)
    Image.new("RGB", (300, 200), (200, 30, 30)).save(tmp_path / "c.png")
    (tmp_path / "test.jsonl").write_text(json.dumps({
        "images": ["c.png"], "meta": {"object": "frog", "form": "multiple-choice", "options": ["frog", "duck"],
                                      "letter": "A"},
        "messages": [{"role": "user", "content": "<image>What is it?\nA. frog\nB. duck"},
                     {"role": "assistant", "content": "A"}]}) + "\n")
    before = model.encoders["image"].preprocess_id
    res = resolution_sweep(model, "magnifier", [60, 120], tmp_path / "out", "m", manifest=tmp_path / "test.jsonl",
                           progress=False)
    assert [r["side"] for r in res["rows"]] == [60, 120]
    assert model.encoders["image"].main.sides == () and model.encoders["image"].preprocess_id == before


def test_a_perceiving_projectors_patch_part_can_stay_frozen_while_its_words_learn(perceiving):
    """`freeze: [projectors.video.main]`: the part that carries motion keeps what it learned."""
    from anymal.errors import ConfigError
    from anymal.train.stages import apply_stage, plan_rows

    apply_stage(perceiving, "align", ["projectors.image.main"])
    proj = perceiving.projectors["image"]
    assert not any(p.requires_grad for p in proj.main.parameters())
    assert all(p.requires_grad for p in proj.words.parameters())
    assert dict((r[0], r[1]) for r in plan_rows(perceiving))["projectors.image"] == "partly"
    with pytest.raises(ConfigError, match="no component 'projectors.image.nope'"):
        apply_stage(perceiving, "align", ["projectors.image.nope"])
