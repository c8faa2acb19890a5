"""Questions unrelated to the attached input (data/builders/unrelated.py, eval/kept.py): built from the
source sets' own splits with held-out question forms, answered by the LLM alone, and judged against it."""
from __future__ import annotations

import json
import re

from anymal.data.builders.unrelated import FACTS, TEST_FORMS, TRAIN_FORMS, _sentences, build_unrelated
from anymal.eval.tasks import TASKS, Row


def _sources(tmp_path) -> dict:
    src = {}
    for name, key in (("pics", "images"), ("sounds", "audios"), ("motion", "imus"), ("clips", "videos")):
        src[key] = (str(tmp_path / name),)
        (tmp_path / name).mkdir()
        for split in ("train", "test"):
            recs = [{"messages": [{"role": "user", "content": "<x>What is it?"}, {"role": "assistant", "content": "A."}],
                     key: [f"{split}/{i}.bin"]} for i in range(3)]
            (tmp_path / name / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return src


def test_built_from_each_split_with_held_out_forms_and_the_llms_own_answers(tmp_path, tiny_checkpoint):
    from anymal import AnyMAL
    from anymal.model.settings import GenerationSettings

    stats = build_unrelated(tmp_path / "out", model=str(tiny_checkpoint), counts={"train": 12, "test": 6},
                            progress=False, **_sources(tmp_path))
    assert sum(stats["train"].values()) == 12 and sum(stats["test"].values()) == 6 + 4 * len(FACTS)
    test = [json.loads(l) for l in (tmp_path / "out" / "test.jsonl").read_text().splitlines()]
    train = [json.loads(l) for l in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    assert {r["meta"]["form"] for r in train} <= set(TRAIN_FORMS)
    assert {r["meta"]["form"] for r in test} <= set(TEST_FORMS) | {"fact"}
    for r in test:
        media = next(v for k, v in r.items() if k not in ("messages", "meta"))
        assert len(media) == 1 and "/test/" in media[0]  # a test question attaches a test input
        assert re.fullmatch(f"<{r['meta']['category']}>[^<]+", r["messages"][0]["content"])
    facts = [r for r in test if r["meta"]["form"] == "fact"]
    assert {r["messages"][0]["content"].split(">", 1)[1] for r in facts} == {q for q, _ in FACTS}
    model = AnyMAL.from_pretrained(str(tiny_checkpoint))
    question = test[0]["messages"][0]["content"].split(">", 1)[1]
    alone = model.generate([[{"role": "user", "content": question}]], GenerationSettings(max_new_tokens=48))[0]
    assert test[0]["messages"][1]["content"] == _sentences(alone)


def test_answers_are_cut_at_their_last_full_sentence():
    assert _sentences("Paris is the capital. It has the Eiffel") == "Paris is the capital."
    assert _sentences("Paris.") == "Paris." and _sentences("no full stop at all") == "no full stop at all"


def test_the_judge_compares_with_the_llms_own_answer_and_reads_facts():
    def judge(pred, ref, **meta):
        return TASKS["unrelated"].judge(Row(pred, ref, meta), [ref])

    assert judge("The capital of France is Paris.", "The capital of France is Paris.", expect="paris") == \
        {"kept": True, "exact": True, "fact_correct": True}
    v = judge("A cup on a table.", "The capital of France is Paris.", expect="paris")
    assert v == {"kept": False, "exact": False, "fact_correct": False}
    assert judge("Paris is the capital of France.", "The capital of France is Paris.") == {"kept": True, "exact": False}
