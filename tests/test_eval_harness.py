"""Evaluation harness, part 2: VQA / multiple-choice metrics, METEOR, baselines (chance, blind,
linear probe), reproducibility, the suite table in the README, and the image-vqa / magnifier sets."""
import json
import shutil

import pytest

from anymal.eval.runner import evaluate
from anymal.eval.tasks import TASKS, Probe, Row, Task, _label, get_task
from anymal.eval.vqa import extract_choice, normalize_answer, short_answer, vqa_accuracy


def test_vqa_normalisation_and_accuracy_by_hand():
    assert normalize_answer("Two dogs.") == "2 dogs"
    assert normalize_answer("The RED one!") == "red 1"
    assert normalize_answer("dont") == "don't" and normalize_answer("3.5") == "3.5"
    assert vqa_accuracy("red", ["Red."]) == 1.0 and vqa_accuracy("blue", ["red"]) == 0.0
    # 10 human answers, 2 say "two": each leave-one-out subset scores min(matches/3, 1)
    humans = ["two", "2"] + ["three"] * 8
    assert vqa_accuracy("2", humans) == pytest.approx((8 * (2 / 3) + 2 * (1 / 3)) / 10)
    assert vqa_accuracy("three", humans) == 1.0
    assert short_answer("It is red. The shape is a circle.") == "red"
    assert short_answer("The answer is yes") == "yes"


def test_multiple_choice_letter_extraction():
    opts = ["goat", "pig", "cow"]
    cases = {"B": "B", "(C)": "C", "The answer is (C).": "C", "B) pig": "B", "C: cow": "C",
             "I think it is a cow": "C", "A pig.": "B",  # "A" is an article here, the option text decides
             "Answer: A pig": "B", "A goat or a pig": None,  # two options named: no pick
             "D": None, "": None, "a horse": None,
             "A. goat\nB. pig\nC.": None,  # the option list repeated back is no pick
             "A. goat\n\nThe answer is C. cow": "C"}
    assert {t: extract_choice(t, opts) for t in cases} == cases


@pytest.mark.skipif(not shutil.which("java"), reason="METEOR needs java")
def test_caption_scores_include_meteor():
    from anymal.eval.metrics import caption_scores

    s = caption_scores(["a frog sitting on a leaf", "a blue car"], [["a green frog on a leaf"], ["a red truck"]])
    assert 0.1 < s["METEOR"] < 0.5 and {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr", "ROUGE-L"} <= set(s)


def _manifest(tmp_path, images, name="m.jsonl"):
    colours = ["red", "green", "blue", "yellow"]
    recs = [{"messages": [{"role": "user", "content": "<image>What colour is this?"},
                          {"role": "assistant", "content": f"{colours[i]}."}], "images": [str(p)],
             "meta": {"colour": colours[i], "half": "warm" if i in (0, 3) else "cool"}} for i, p in enumerate(images)]
    f = tmp_path / name
    f.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    return f


def _colour_task(manifest):
    return Task("colours", str(manifest), "", "tiny colour task", _label, group_by="half", label_key="colour",
                primary="accuracy", max_new_tokens=5, chance={"accuracy": 0.25}, probe=Probe(str(manifest), "colour", "accuracy"))


def test_baselines_blind_probe_chance_and_reproducible_reports(tiny_model, images, tmp_path, monkeypatch):
    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path / "cache"))
    m = _manifest(tmp_path, images)
    task = _colour_task(m)
    a = evaluate(tiny_model, task, m, tmp_path / "a", batch_size=2, progress=False, baselines=True)
    b = evaluate(tiny_model, task, m, tmp_path / "b", batch_size=3, progress=False, baselines=True)
    base = a["baselines"]
    assert base["chance"] == {"accuracy": 0.25} and base["majority class"] == {"accuracy": 0.25}
    blind = base["blind (same LLM and prompt, input removed)"]
    assert set(blind) >= {"accuracy"}
    rows = [json.loads(line) for line in (tmp_path / "a" / "predictions.jsonl").open()]
    assert len({r["blind_prediction"] for r in rows}) == 1  # no input -> one answer for the one prompt
    probe = base["linear probe on the frozen encoder's features"]
    assert probe["accuracy"] == 1.0 and "4 training inputs" in probe["about"]  # 4 distinct images, own labels
    # re-running (another batch size, a warm feature cache) gives the very same numbers and answers
    assert a["scores"] == b["scores"] and a["baselines"] == b["baselines"]
    assert rows == [json.loads(line) for line in (tmp_path / "b" / "predictions.jsonl").open()]
    assert (tmp_path / "a" / "baselines.png").stat().st_size > 0
    assert "baseline: blind" in (tmp_path / "a" / "results.md").read_text()


def test_suite_runs_every_task_and_writes_the_readme_table(tiny_model, images, tmp_path, monkeypatch):
    from anymal.errors import DataError
    from anymal.eval import suite

    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path / "cache"))
    m = _manifest(tmp_path, images)
    monkeypatch.setitem(TASKS, "colours", _colour_task(m))
    monkeypatch.setitem(suite.SUITES, "tiny", ["colours"])
    res = suite.run_suite(tiny_model, "tiny", tmp_path / "suite", batch_size=4, progress=False)
    row = next(line for line in res["table"].splitlines() if line.startswith("| colours"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == ["colours", "4", "accuracy"] and cells[4] == "0.250" and cells[7] == "1.000"
    assert (tmp_path / "suite" / "colours" / "results.json").is_file()
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{suite.BEGIN}\nold table\n{suite.END}\noutro\n")
    suite.update_readme(readme, res["table"], "anymal eval --suite tiny")
    text = readme.read_text()
    assert "old table" not in text and row in text and text.startswith("intro\n") and text.endswith("outro\n")
    suite.update_readme(readme, res["table"], "anymal eval --suite tiny")  # idempotent
    assert readme.read_text() == text
    with pytest.raises(DataError, match="marker lines"):
        suite.update_readme(tmp_path / "m.jsonl", res["table"], "x")
    monkeypatch.setitem(suite.SUITES, "broken", ["image-vqa"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="anymal data build easy-vqa"):
        suite.run_suite(tiny_model, "broken", tmp_path / "s2", progress=False)


def test_vqa_and_magnifier_judges():
    vqa = get_task("image-vqa").judge
    assert vqa(Row("It is red.", "Red.", {"answer": "red"}), [])["vqa_accuracy"] == 1.0
    assert vqa(Row("Blue", "Red.", {"answer": "red"}), [])["vqa_accuracy"] == 0.0
    mag = get_task("magnifier").judge
    mc = {"form": "multiple-choice", "options": ["goat", "pig", "cow", "duck"], "letter": "B", "object": "pig"}
    assert mag(Row("B", "B", mc), [])["mc_accuracy"] and not mag(Row("A", "B", mc), [])["mc_accuracy"]
    assert mag(Row("Perhaps", "B", mc), [])["mc_no_pick"]
    op = {"form": "open-ended", "object": "pig"}
    assert mag(Row("Two pigs.", "A pig.", op), [])["open_accuracy"] and not mag(Row("A cow", "", op), [])["correct"]


STAMPS = __import__("pathlib").Path("/usr/share/tuxpaint/stamps")


@pytest.mark.skipif(not STAMPS.is_dir(), reason="needs tuxpaint-stamps-default")
def test_magnifier_set_is_small_objects_in_large_canvases_and_deterministic(tmp_path):
    from PIL import Image

    from anymal.data.builders.magnifier import build_magnifier

    counts = build_magnifier(tmp_path / "a", images=3, min_side=320, max_side=480, progress=False)
    build_magnifier(tmp_path / "b", images=3, min_side=320, max_side=480, progress=False)
    assert counts["test"] == 6
    recs = [json.loads(line) for line in (tmp_path / "a" / "test.jsonl").open()]
    assert (tmp_path / "a" / "test.jsonl").read_text() == (tmp_path / "b" / "test.jsonl").read_text()
    for r in recs:
        meta = r["meta"]
        img = Image.open(tmp_path / "a" / r["images"][0])
        assert img.size == (meta["width"], meta["height"]) and 320 <= min(img.size) <= max(img.size) <= 480
        x0, y0, x1, y1 = meta["box"]
        assert 0 <= x0 < x1 <= meta["width"] and 0 <= y0 < y1 <= meta["height"]
        assert 0.006 < meta["area_frac"] < 0.014  # ~1% of the canvas (rounding to whole pixels)
        if meta["form"] == "multiple-choice":
            assert meta["options"].count(meta["object"]) == 1 and len(set(meta["options"])) == 4
            assert meta["options"]["ABCD".index(meta["letter"])] == meta["object"]
            assert r["messages"][1]["content"] == meta["letter"]
    assert [r["meta"]["form"] for r in recs] == ["multiple-choice", "open-ended"] * 3
    # the training split: same form, training captions only, its own files next to the test set's
    build_magnifier(tmp_path / "a", images=20, min_side=320, max_side=400, split="train", progress=False)
    train = [json.loads(line) for line in (tmp_path / "a" / "train.jsonl").open()]
    assert len(train) == 40 and all(r["images"][0].startswith("images/train-") for r in train)
    from anymal.data.builders.tuxpaint import caption_split

    assert {caption_split(r["meta"]["caption"], 0.1, 0.1) for r in train} == {"train"}
    assert {caption_split(r["meta"]["caption"], 0.1, 0.1) for r in recs} == {"test"}
    assert (tmp_path / "a" / "test.jsonl").read_text() == (tmp_path / "b" / "test.jsonl").read_text()  # untouched


def test_easy_vqa_set_keeps_the_package_split(tmp_path):
    pytest.importorskip("easy_vqa")
    from anymal.data.builders.easy_vqa import build_easy_vqa

    counts = build_easy_vqa(tmp_path, test_per_image=2, progress=False)
    assert counts["train"] + counts["val"] == 38575 and counts["test"] == 2000
    first = json.loads((tmp_path / "test.jsonl").open().readline())
    assert (tmp_path / first["images"][0]).is_file() and first["meta"]["answer_type"] in ("yes/no", "shape", "color")
    assert first["messages"][0]["content"].endswith("Answer with one word.")
    val_ids = {json.loads(line)["meta"]["image_id"] for line in (tmp_path / "val.jsonl").open()}
    train_ids = {json.loads(line)["meta"]["image_id"] for line in (tmp_path / "train.jsonl").open()}
    assert val_ids == set(range(400)) and not val_ids & train_ids


def test_recall_at_k_by_hand_and_against_brute_force():
    import torch

    from anymal.eval.metrics import recall_at_k

    sim = [[0.9, 0.1, 0.5], [0.2, 0.3, 0.1]]
    rel = [[False, False, True], [True, False, False]]
    # query 0: order 0, 2, 1 -> relevant at rank 2; query 1: order 1, 0, 2 -> relevant at rank 2
    assert recall_at_k(sim, rel, (1, 2, 3)) == {"R@1": 0.0, "R@2": 1.0, "R@3": 1.0}
    g = torch.Generator().manual_seed(0)
    s, r = torch.randn(50, 20, generator=g), torch.rand(50, 20, generator=g) < 0.1
    brute = sum(any(r[q, j] for j in sorted(range(20), key=lambda j: -s[q, j])[:5]) for q in range(50)) / 50
    assert recall_at_k(s, r, (5,))["R@5"] == pytest.approx(brute)
    with pytest.raises(ValueError, match="expected the same"):
        recall_at_k(s, r[:3])


def test_zero_shot_retrieval_baseline_scores_a_text_aligned_encoder(tiny_model, images, tmp_path, monkeypatch):
    """An encoder whose embedding *is* its label text's embedding retrieves perfectly; a shuffled one does not."""
    import torch

    from anymal.data.jsonl import read_jsonl
    from anymal.eval.baselines import zero_shot_retrieval
    from anymal.eval.tasks import Retrieval

    colours = ["red", "green", "blue", "yellow"]
    texts = torch.nn.functional.normalize(torch.randn(4, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    samples, _ = read_jsonl(_manifest(tmp_path, images), ["image"])
    enc = tiny_model.encoders["image"]
    monkeypatch.setattr(enc, "preprocess", lambda src: torch.tensor([[str(p) for p in images].index(str(src))]))
    monkeypatch.setattr("anymal.text_embed.embed_texts", lambda ts: texts[[colours.index(t) for t in ts]])
    task = Task("colours", "", "", "", _label, retrieval=Retrieval("colour", lambda: colours, str, "accuracy"))
    monkeypatch.setattr(enc, "embed", lambda x: texts[x[:, 0]], raising=False)  # image i -> colour i's text
    good = zero_shot_retrieval(tiny_model, task, samples)
    monkeypatch.setattr(enc, "embed", lambda x: texts[(x[:, 0] + 1) % 4])  # every image looks like the next colour
    bad = zero_shot_retrieval(tiny_model, task, samples)
    assert good["accuracy"] == good["input->text R@1"] == good["text->input R@1"] == 1.0
    assert bad["input->text R@1"] == 0.0 and bad["input->text R@5"] == 1.0  # 4 labels: top-5 holds them all
