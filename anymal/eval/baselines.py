"""The numbers a reader needs next to ours (`anymal eval --baselines`), computed on the same items.

* **chance** — the task's documented guessing scores (`Task.chance`, per score), and the **majority class**
  (always answering the most frequent test label) for closed-label tasks;
* **blind** — the very same model, prompt and decoding with every non-text part removed: what the
  LLM answers from priors alone (a score close to ours means the input is not being used);
* **linear probe** — multinomial logistic regression on the frozen encoder's features, trained on
  the task's training manifest (`Task.probe`) and scored on the test inputs: how much of the answer
  the encoder itself carries. Features: the encoder's output tokens, flattened in order when every
  input has the same token count (keeps frame/position order, e.g. video direction) — average-pooled
  along the token axis into at most 64k values first — else mean-pooled; cached in the training
  feature cache. Only where train and test share the label set (not for tasks split by
  caption, whose test objects never occur in training);
* **zero-shot retrieval** in the encoder's own text-aligned space (`Task.retrieval`; the IMU and 3-D
  encoders were trained contrastively against MiniLM sentence embeddings): input -> label text
  R@1/R@5 over every label of the task (R@1 = zero-shot accuracy) and label text -> input R@1/R@5;
* the task's own reference system (`Task.baseline`, e.g. Whisper's decoder for speech).
"""
from __future__ import annotations

from typing import Callable

import torch
from tqdm import tqdm

from ..data.jsonl import read_jsonl
from ..errors import DataError


def blind(prompts: list[list[dict]]) -> list[list[dict]]:
    """The prompts with every modality part removed (text parts and plain-string contents kept)."""
    out = []
    for msgs in prompts:
        kept = []
        for m in msgs:
            content = m["content"]
            if isinstance(content, list):
                content = [p for p in content if not isinstance(p, dict) or p.get("type") == "text"]
            kept.append({**m, "content": content})
        out.append(kept)
    return out


def _features(model, samples: list, progress: bool, desc: str) -> list[torch.Tensor]:
    """Frozen-encoder features of each sample's single input, through the training feature cache."""
    from ..data.feature_cache import FeatureCache

    caches: dict[str, FeatureCache] = {}  # only the modalities the probe reads (building one hashes weights)
    feats = []
    for s in tqdm(samples, desc=desc, disable=not progress, unit="input"):
        media = model.processor.media(s.messages)
        if len(media) != 1:
            raise DataError(f"{s.where}: a linear probe needs exactly one input per sample, found {len(media)}")
        m = media[0].modality
        if m not in caches:
            caches[m] = FeatureCache(model.encoders[m])
        feats.append(caches[m].get(media[0].source).float())
    return feats


def _vectors(feats: list[torch.Tensor], budget: int = 65536) -> torch.Tensor:
    if len({tuple(f.shape) for f in feats}) > 1:
        return torch.stack([f.mean(0) for f in feats])
    x = torch.stack(feats)  # [N, tokens, dim]
    groups = max(1, min(x.shape[1], budget // x.shape[2]))
    return torch.nn.functional.adaptive_avg_pool1d(x.transpose(1, 2), groups).flatten(1)


def _unique_inputs(samples: list, label: str) -> list:
    """One sample per input (manifests ask several questions about one input), labelled ones only."""
    seen, out = set(), []
    for s in samples:
        key = repr([p for m in s.messages if isinstance(m["content"], list) for p in m["content"]
                    if isinstance(p, dict) and p.get("type") != "text"])
        if s.meta.get(label) is not None and key not in seen:
            seen.add(key)
            out.append(s)
    return out


def linear_probe_accuracy(model, task, test_samples: list, progress: bool = True) -> dict:
    from ..objectives import linear_probe

    probe = task.probe
    train, _ = read_jsonl(probe.train, list(model.projectors), on_error="skip")
    train, test = _unique_inputs(train, probe.label), _unique_inputs(test_samples, probe.label)
    if not train or not test:
        raise DataError(f"{probe.train}: no labelled training inputs for the probe (meta.{probe.label})")
    x_tr = _vectors(_features(model, train, progress, f"{task.name} probe: train features"))
    x_te = _vectors(_features(model, test, progress, f"{task.name} probe: test features"))
    names = sorted({str(s.meta[probe.label]) for s in train + test})
    y_tr = torch.tensor([names.index(str(s.meta[probe.label])) for s in train])
    y_te = torch.tensor([names.index(str(s.meta[probe.label])) for s in test])
    acc = float((linear_probe(x_tr, y_tr, x_te) == y_te).float().mean())
    return {probe.score: acc, "about": f"{len(train)} training inputs, {len(test)} test inputs, "
                                       f"{x_tr.shape[1]}-d features, labels: meta.{probe.label}"}


def zero_shot_retrieval(model, task, samples: list) -> dict:
    from ..text_embed import embed_texts
    from .metrics import recall_at_k

    spec = task.retrieval
    test = _unique_inputs(samples, spec.label)
    media = [model.processor.media(s.messages)[0] for s in test]
    enc = model.encoders[media[0].modality]
    if not hasattr(enc, "embed"):
        raise DataError(f"task {task.name}: the {media[0].modality} encoder {enc.id} has no text-aligned space (embed)")
    with torch.no_grad():
        emb = torch.cat([enc.embed(torch.stack([enc.preprocess(m.source) for m in media[i:i + 128]]))
                         for i in range(0, len(media), 128)])
    labels = spec.labels()
    texts = embed_texts([spec.text(label) for label in labels])
    sim = emb.float() @ texts.float().T  # [inputs, labels]
    rel = torch.tensor([[str(s.meta[spec.label]) == label for label in labels] for s in test])
    present = rel.any(0)  # text -> input only for labels that occur among the test inputs
    to_text, to_input = recall_at_k(sim, rel), recall_at_k(sim.T[present], rel.T[present])
    return {spec.score: to_text["R@1"], **{f"input->text {k}": v for k, v in to_text.items()},
            **{f"text->input {k}": v for k, v in to_input.items()},
            "about": f"{len(test)} inputs, {len(labels)} label texts, {int(present.sum())} of them present"}


def run_baselines(model, task, samples: list, prompts: list, refs: list[str],
                  score: Callable[[list[str]], dict], predict: Callable[[list], list[str]], progress: bool
                  ) -> tuple[dict, list[str]]:
    """{baseline name: scores} and the blind run's predictions. `score(preds)` judges predictions
    the same way as the model's; `predict(prompts)` decodes with the task's pinned settings."""
    out: dict[str, dict] = {}
    if task.chance:
        out["chance"] = dict(task.chance)
    blind_preds = predict(blind(prompts))
    out["blind (same LLM and prompt, input removed)"] = score(blind_preds)
    if task.probe:
        out["linear probe on the frozen encoder's features"] = linear_probe_accuracy(model, task, samples, progress)
    if task.retrieval:
        out["encoder zero-shot (its text-aligned space)"] = zero_shot_retrieval(model, task, samples)
    if task.baseline:
        out.update(task.baseline(samples, list(refs), progress))
    return out, blind_preds
