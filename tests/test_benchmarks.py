"""Standard benchmarks in their own formats: each read from a tiny copy written here, scored with
hand-chosen replies against hand-computed values; an eval with nothing to score fails with reasons."""
import base64
import io
import json

import pytest
from PIL import Image

from anymal.cli import main
from anymal.data.benchmarks import Files
from anymal.eval.runner import evaluate, score_rows, split_reference
from anymal.eval.tasks import get_task


def _png(path, colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 24), colour).save(path)
    return path


def _score(task: str, files: Files, replies: dict):
    """Read the benchmark, answer each sample with replies[where-fragment] and score it."""
    t = get_task(task)
    samples, skipped = t.reader(files)
    refs = [split_reference(s.messages)[1] for s in samples]
    preds = [next(v for k, v in replies.items() if k in s.where) for s in samples]
    rows, scores = score_rows(t, samples, preds, refs)
    return samples, skipped, rows, scores


def test_vqav2_reads_ten_answers_and_scores_the_official_accuracy(tmp_path):
    q = {"data_subtype": "val2014", "questions": [{"image_id": 1, "question": "What colour?", "question_id": 10},
                                                   {"image_id": 2, "question": "How many?", "question_id": 20},
                                                   {"image_id": 3, "question": "Missing picture?", "question_id": 30}]}
    ann = {"annotations": [
        {"question_id": 10, "image_id": 1, "answer_type": "other", "multiple_choice_answer": "blue",
         "answers": [{"answer": "red"}] * 2 + [{"answer": "blue"}] * 8},
        {"question_id": 20, "image_id": 2, "answer_type": "number", "multiple_choice_answer": "2",
         "answers": [{"answer": "2"}] * 10},
        {"question_id": 30, "image_id": 3, "answer_type": "yes/no", "answers": [{"answer": "yes"}] * 10}]}
    (tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps(q))
    (tmp_path / "v2_mscoco_val2014_annotations.json").write_text(json.dumps(ann))
    for i in (1, 2):
        _png(tmp_path / "val2014" / f"COCO_val2014_{i:012d}.jpg")
    samples, skipped, rows, scores = _score(
        "vqav2", Files(tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json", tmp_path / "val2014"),
        {"questions[0]": "Red.", "questions[1]": "It is two."})
    assert len(samples) == 2 and skipped.total == 1 and "does not exist" in skipped.summary()
    assert "single word or phrase" in samples[0].messages[0]["content"][-1]["text"]
    # "red": 2 of 10 humans; leave-one-out: 2 subsets with 1 red (1/3), 8 with 2 reds (2/3) -> 0.6
    assert rows[0]["vqa_accuracy"] == pytest.approx(0.6) and rows[1]["vqa_accuracy"] == 1.0
    assert scores["vqa_accuracy"] == pytest.approx(0.8) and {r["group"] for r in rows} == {"other", "number"}


def test_textvqa_reads_its_data_list(tmp_path):
    d = {"data": [{"question": "What does the sign say?", "image_id": "abc", "question_id": 1,
                   "answers": ["stop"] * 9 + ["halt"]}]}
    (tmp_path / "TextVQA_0.5.1_val.json").write_text(json.dumps(d))
    _png(tmp_path / "train_images" / "abc.jpg")
    _, _, rows, _ = _score("textvqa", Files(tmp_path / "TextVQA_0.5.1_val.json", tmp_path / "train_images"),
                           {"data[0]": "halt"})
    assert rows[0]["vqa_accuracy"] == pytest.approx(1 / 3 * 0.9)  # 9 subsets with one "halt", 1 without


def test_pope_json_lines_and_its_yes_metrics(tmp_path):
    lines = [{"question_id": i, "image": f"p{i}.jpg", "text": "Is there a cat in the image?", "label": lab}
             for i, lab in enumerate(["yes", "yes", "no", "no"])]
    path = tmp_path / "coco_pope_adversarial.json"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    for i in range(4):
        _png(tmp_path / f"p{i}.jpg")
    _, _, rows, scores = _score("pope", Files(path), {":1": "Yes, there is a cat.", ":2": "Yes.",
                                                      ":3": "No, there is not.", ":4": "There is a cat."})
    # said yes, yes, no, yes: TP 2, said yes 3, truly yes 2
    assert [r["predicted"] for r in rows] == ["yes", "yes", "no", "yes"]
    assert scores["accuracy"] == 0.75 and scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == 1.0
    assert scores["F1"] == pytest.approx(0.8) and scores["yes_ratio"] == 0.75 and rows[0]["group"] == "adversarial"


def test_mme_both_layouts_acc_plus_and_totals(tmp_path):
    ex = tmp_path / "existence"
    for name, qa in (("a", "Is there a dog?\tYes\nIs there a cat?\tNo"), ("b", "Is there a car?\tYes\nIs there a bus?\tNo")):
        _png(ex / f"{name}.jpg")
        (ex / f"{name}.txt").write_text(qa + "\n")
    art = tmp_path / "artwork"
    _png(art / "images" / "10002.jpg")
    (art / "questions_answers_YN").mkdir()
    (art / "questions_answers_YN" / "10002.txt").write_text("Is this by Monet?\tYes\nIs this by Dali?\tNo\n")
    cog = tmp_path / "commonsense_reasoning"
    _png(cog / "c.png")
    (cog / "c.txt").write_text("Is it safe?\tYes\nIs it hot?\tNo\n")
    replies = {"a.txt:1": "Yes", "a.txt:2": "no.", "b.txt:1": "Yes", "b.txt:2": "Yes, a bus.",
               "10002.txt:1": "yes", "10002.txt:2": "No", "c.txt:1": "I think so", "c.txt:2": "Yes"}
    samples, _, rows, scores = _score("mme", Files(tmp_path), replies)
    assert len(samples) == 8
    # existence: 3 of 4 right (0.75), 1 of 2 pictures all right (0.5) -> 125; artwork 200; commonsense 0
    assert scores["existence score"] == pytest.approx(125) and scores["artwork score"] == pytest.approx(200)
    assert scores["commonsense_reasoning score"] == 0 and scores["perception total"] == pytest.approx(325)
    assert scores["cognition total"] == 0


def _b64_png() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 200, 10)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_mmbench_tsv_options_and_circular_accuracy(tmp_path, monkeypatch):
    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path / "cache"))
    pic = _b64_png()
    head = "index\tquestion\thint\tA\tB\tC\tD\tanswer\tcategory\timage"
    rows = [f"1\tWhat colour?\tnan\tred\tgreen\tnan\tnan\tB\tcolour\t{pic}",
            f"1000001\tWhat colour?\tnan\tgreen\tred\tnan\tnan\tA\tcolour\t{pic}",
            f"2\tWhich shape?\tLook closely.\tsquare\tcircle\tstar\tnan\tA\tshape\t{pic}",
            f"1000002\tWhich shape?\tLook closely.\tcircle\tstar\tsquare\tnan\tC\tshape\t{pic}",
            f"3\tTest row?\tnan\tyes\tno\tnan\tnan\t\tshape\t{pic}"]
    path = tmp_path / "MMBench_DEV_EN.tsv"
    path.write_text("\n".join([head] + rows) + "\n")
    samples, skipped, rows_, scores = _score("mmbench", Files(path), {":2": "B", ":3": "A. green", ":4": "(A)", ":5": "B"})
    assert skipped.total == 1 and "option letters" in skipped.summary()
    assert samples[2].meta["options"] == ["square", "circle", "star"] and "Look closely." in \
        samples[2].messages[0]["content"][-1]["text"]
    assert samples[0].messages[0]["content"][0]["path"].endswith(".png")
    assert scores["accuracy"] == 0.75 and scores["circular_accuracy"] == 0.5


def test_scienceqa_problems_splits_and_context_groups(tmp_path):
    problems = {"1": {"question": "Which is a mammal?", "choices": ["frog", "whale"], "answer": 1, "hint": "",
                      "image": "image.png", "subject": "natural science"},
                "2": {"question": "Which word is a noun?", "choices": ["run", "cat", "blue"], "answer": 1,
                      "hint": "Nouns name things.", "image": None},
                "3": {"question": "2+2?", "choices": ["4", "5"], "answer": 0, "hint": "", "image": None},
                "4": {"question": "train only", "choices": ["a", "b"], "answer": 0, "hint": "", "image": None}}
    (tmp_path / "problems.json").write_text(json.dumps(problems))
    (tmp_path / "pid_splits.json").write_text(json.dumps({"train": ["4"], "test": ["1", "2", "3"]}))
    _png(tmp_path / "images" / "test" / "1" / "image.png")
    samples, _, rows, scores = _score("scienceqa", Files(tmp_path / "problems.json"),
                                      {": 1": "B", ": 2": "The answer is C.", ": 3": "A"})
    assert [s.meta["context"] for s in samples] == ["IMG", "TXT", "NO"]
    assert samples[1].messages[0]["content"][0]["text"].startswith("Context: Nouns name things.")
    assert len(samples[1].messages[0]["content"]) == 1  # no picture: a text-only question
    assert scores["accuracy"] == pytest.approx(2 / 3) and [r["accuracy"] for r in rows] == [True, False, True]


_REFS = ["a dog barks twice in a yard", "a dog is barking loudly outside", "two loud barks from a big dog",
         "a dog barks while cars pass by", "a large dog barks near a road"]


def test_coco_captions_are_scored_against_every_reference(tmp_path):
    d = {"images": [{"id": 7, "file_name": "COCO_val2014_000000000007.jpg"}],
         "annotations": [{"image_id": 7, "id": i, "caption": c} for i, c in enumerate(_REFS)]}
    (tmp_path / "captions_val2014.json").write_text(json.dumps(d))
    _png(tmp_path / "COCO_val2014_000000000007.jpg")
    samples, _, rows, scores = _score("coco-caption", Files(tmp_path / "captions_val2014.json"), {"image 7": _REFS[3]})
    assert samples[0].meta["references"] == _REFS and rows[0]["references"] == _REFS
    # the reply is the 4th reference word for word: BLEU-4 and ROUGE-L are 1 against all five (not the first)
    assert scores["BLEU-4"] == pytest.approx(1.0, abs=1e-6) and scores["ROUGE-L"] == pytest.approx(1.0)


@pytest.fixture
def no_meteor(monkeypatch):
    """METEOR's Java start costs ~5 s; coco-caption's test and test_eval_harness run it."""
    monkeypatch.setattr("anymal.eval.metrics.shutil.which", lambda name: None)


def test_audiocaps_groups_five_rows_per_clip_and_counts_missing_clips(tmp_path, no_meteor):
    lines = ["audiocap_id,youtube_id,start_time,caption"]
    lines += [f"{i},clipA,30,{c}" for i, c in enumerate(_REFS)] + [f"{9 + i},gone,0,{c}" for i, c in enumerate(_REFS)]
    (tmp_path / "test.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "YclipA.wav").write_bytes(b"RIFF0000WAVE")
    samples, skipped, _, scores = _score("audiocaps", Files(tmp_path / "test.csv", tmp_path / "audio"), {"": _REFS[2]})
    assert len(samples) == 1 and samples[0].meta["references"] == _REFS and skipped.total == 1
    assert samples[0].messages[0]["content"][0]["type"] == "audio" and scores["BLEU-4"] == pytest.approx(1.0, abs=1e-6)


def test_clotho_reads_five_caption_columns(tmp_path, no_meteor):
    (tmp_path / "clotho_captions_evaluation.csv").write_text(
        "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n" +
        "bark.wav," + ",".join(_REFS) + "\n")
    (tmp_path / "bark.wav").write_bytes(b"RIFF0000WAVE")
    samples, _, _, scores = _score("clotho", Files(tmp_path / "clotho_captions_evaluation.csv"), {"": _REFS[4]})
    assert samples[0].meta["references"] == _REFS and scores["ROUGE-L"] == pytest.approx(1.0)


def test_benchmark_runs_end_to_end_and_nothing_to_score_fails_loudly(tiny_model, tiny_checkpoint, tmp_path, capsys):
    lines = [{"question_id": i, "image": f"p{i}.jpg", "text": "Is there a cat?", "label": "yes" if i % 2 else "no"}
             for i in range(4)]
    path = tmp_path / "coco_pope_random.json"
    path.write_text("\n".join(json.dumps(x) for x in lines))
    for i in range(3):
        _png(tmp_path / f"p{i}.jpg")
    res = evaluate(tiny_model, "pope", path, tmp_path / "out", progress=False)
    assert res["n"] == 3 and res["skipped"] == 1 and set(res["scores"]) >= {"accuracy", "precision", "F1", "yes_ratio"}
    assert next(iter(res["skipped_by_reason"])).startswith("field 'image': media file <path> does not exist")
    # every picture missing: the command exits non-zero with the reason
    for p in tmp_path.glob("p*.jpg"):
        p.unlink()
    assert main(["eval", "--task", "pope", "--data", str(path), "--model", str(tiny_checkpoint),
                 "--out", str(tmp_path / "o2"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "nothing to score for task pope" in err and "4 x field 'image': media file <path> does not exist" in err
    assert main(["eval", "--task", "vqav2", "--model", str(tiny_checkpoint)]) == 2
    assert "--data is needed" in capsys.readouterr().err


def test_a_manifest_without_the_task_field_is_one_clear_line(tiny_checkpoint, images, tmp_path, capsys):
    rec = {"messages": [{"role": "user", "content": "<image>What colour?"}, {"role": "assistant", "content": "red"}],
           "images": [str(images[0])], "meta": {"category": "colour"}}
    (tmp_path / "m.jsonl").write_text(json.dumps(rec) + "\n")
    assert main(["eval", "--task", "image-vqa", "--data", str(tmp_path / "m.jsonl"), "--model", str(tiny_checkpoint),
                 "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no meta field 'answer' (task image-vqa reads meta.answer" in err and "Traceback" not in err


def test_every_task_documents_the_fields_it_reads():
    from anymal.eval.tasks import TASKS

    assert not [name for name in TASKS.names() if not TASKS.get(name).fields]


def test_the_docs_list_every_task_and_the_fields_it_reads():
    from anymal.eval.tasks import TASKS
    from anymal.paths import PACKAGE_DIR

    doc = (PACKAGE_DIR.parent / "docs" / "evaluation.md").read_text()
    assert not [n for n in TASKS.names() if f"| `{n}` |" not in doc]
    assert not [n for n in TASKS.names() if TASKS.get(n).reader is None and TASKS.get(n).fields not in doc]
