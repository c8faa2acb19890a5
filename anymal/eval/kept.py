"""`unrelated`: questions that have nothing to do with the attached input, scored against the frozen LLM's
own answer to the question alone (issue 31: the LLM's own abilities kept; data/builders/unrelated.py).

`kept`: the answer shares at least half its words with the LLM's own (token F1 >= 0.5); `exact`: it is
the LLM's own answer; `fact_correct`: on the factual questions, the answer has the right word. The LLM
alone is its own baseline: kept 1 by construction, and its fact_correct is what an input must not lower.
"""
from __future__ import annotations

import re
from collections import Counter

from ..data.builders import build_command, manifest
from .tasks import Row, Task, register


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def token_f1(pred: str, ref: str) -> float:
    p, r = _tokens(pred), _tokens(ref)
    common = sum((Counter(p) & Counter(r)).values())
    return 0.0 if not common else 2 * common / (len(p) + len(r))


def judge(row: Row, refs: list[str]) -> dict:
    out = {"kept": token_f1(row.prediction, row.reference) >= 0.5,
           "exact": _tokens(row.prediction) == _tokens(row.reference)}
    if row.meta.get("expect"):
        out["fact_correct"] = bool(re.search(row.meta["expect"], row.prediction.lower()))
    return out


def llm_alone(samples: list, refs: list[str], progress: bool) -> dict:
    """The frozen LLM with no input: its answers are the references."""
    facts = [bool(re.search(s.meta["expect"], r.lower())) for s, r in zip(samples, refs) if s.meta.get("expect")]
    return {"the LLM alone (no input; the references)": {"kept": 1.0, "exact": 1.0,
                                                          "fact_correct": sum(facts) / max(len(facts), 1)}}


register(Task("unrelated", manifest("unrelated", "test"), build_command("unrelated"),
              "questions unrelated to the attached photo / sound / motion / video (held-out question forms, topics "
              "and inputs), answered as the frozen LLM answers them alone", judge, group_by="category",
              primary="kept", max_new_tokens=48, baseline=llm_alone, report=("kept", "fact_correct"),
              fields="meta.category; meta.expect (optional: a regex the answer must match)",
              notes=["kept: token F1 with the LLM's own answer >= 0.5; exact: the same words",
                     "fact_correct: factual questions (capital of France, ...) answered with the right word"]))
