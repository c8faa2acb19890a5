"""`anymal safety train | eval`: rebuild the text head; measure every default check's precision/recall."""
from __future__ import annotations

import json
import sys
from pathlib import Path

DEFAULT_IMAGE_SETS = ["data/emoji/train.jsonl", "data/tuxpaint/train.jsonl", "data/tuxpaint/val.jsonl",
                      "data/tuxpaint/test.jsonl"]


def add_parser(sub) -> None:
    s = sub.add_parser("safety", help="the safety checks: retrain the text head, measure precision/recall")
    ssub = s.add_subparsers(dest="what", required=True)
    t = ssub.add_parser("train", help="retrain the text head on the train split of the labelled prompts")
    t.set_defaults(fn=cmd_train)
    e = ssub.add_parser("eval", help="precision/recall of the text and image checks on held-out labelled sets")
    e.add_argument("--images", nargs="*", default=None, metavar="MANIFEST",
                   help="captioned image manifests (default: the built emoji and tuxpaint sets that exist); "
                        "a caption naming a weapon makes a positive")
    e.add_argument("--text-threshold", type=float, default=0.5)
    e.add_argument("--image-threshold", type=float, default=0.3)
    e.add_argument("--out", default="runs/safety")
    e.set_defaults(fn=cmd_eval)


def cmd_train(a) -> int:
    from .text import HEAD, load_prompts, split_of, train_text_head

    rows = [r for r in load_prompts() if split_of(r["text"]) == "train"]
    train_text_head(rows)
    print(f"wrote {HEAD} ({len(rows)} training prompts)", file=sys.stderr)
    return 0


def evaluate_text(threshold: float) -> tuple[dict, list[tuple[float, float, float]]]:
    from .text import CLASSES, TextClassifier, load_prompts, precision_recall, split_of

    rows = [r for r in load_prompts() if split_of(r["text"]) == "test"]
    clf = TextClassifier.load(threshold=threshold)
    verdicts = clf.check([r["text"] for r in rows])
    truth = [r["label"] != "safe" for r in rows]
    res = {"overall": precision_recall([v.unsafe for v in verdicts], truth)}
    for c in CLASSES[1:]:
        idx = [i for i, r in enumerate(rows) if r["label"] == c]
        res[f"recall: {c}"] = sum(verdicts[i].unsafe for i in idx) / max(len(idx), 1)
    tricky = [i for i, r in enumerate(rows) if r.get("shares_words")]
    res["false-positive rate: harmless prompts sharing words with harmful ones"] = (
        sum(verdicts[i].unsafe for i in tricky) / max(len(tricky), 1))
    res["n_tricky"] = len(tricky)
    sweep = []
    for t in [x / 20 for x in range(1, 20)]:
        pr = precision_recall([v.score >= t for v in verdicts], truth)
        sweep.append((t, pr["precision"], pr["recall"]))
    return res, sweep


def evaluate_images(manifests: list[str], threshold: float) -> dict:
    from ..data.jsonl import read_jsonl
    from .image import ImageCheck, names_weapon
    from .text import precision_recall

    items = []
    for m in manifests:
        samples, _ = read_jsonl(m, ["image"], on_error="skip")
        seen = set()
        for s in samples:
            path = next(p["path"] for msg in s.messages if isinstance(msg["content"], list)
                        for p in msg["content"] if p.get("type") == "image")
            if path not in seen:
                seen.add(path)
                items.append((path, names_weapon(s.meta.get("caption", ""))))
    check = ImageCheck(threshold=threshold)
    scores = []
    for i in range(0, len(items), 32):
        scores += check.scores([p for p, _ in items[i:i + 32]])
    res = precision_recall([s >= threshold for s in scores], [w for _, w in items])
    res["flagged_examples"] = [Path(p).name for (p, w), s in zip(items, scores) if s >= threshold][:10]
    res["missed_examples"] = [Path(p).name for (p, w), s in zip(items, scores) if w and s < threshold][:10]
    return res


def cmd_eval(a) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    text, sweep = evaluate_text(a.text_threshold)
    manifests = a.images if a.images is not None else [m for m in DEFAULT_IMAGE_SETS if Path(m).is_file()]
    image = evaluate_images(manifests, a.image_threshold) if manifests else None
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"text": {"threshold": a.text_threshold, **text}, "image": image and {"threshold": a.image_threshold,
              "sets": manifests, **image}, "text_threshold_sweep": sweep}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    o = text["overall"]
    lines = ["| check | held-out set | n (positives) | precision | recall |", "|---|---|---|---|---|",
             f"| text (input and output) @ {a.text_threshold} | labelled prompts, 30% held out | {o['n']} ({o['positives']}) "
             f"| {o['precision']:.3f} | {o['recall']:.3f} |"]
    if image:
        lines.append(f"| image (weapons) @ {a.image_threshold} | {len(manifests)} captioned image sets | {image['n']} "
                     f"({image['positives']}) | {image['precision']:.3f} | {image['recall']:.3f} |")
    lines.append("")
    lines += [f"- {k}: {v:.3f}" for k, v in text.items() if isinstance(v, float)]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.plot([r for _, _, r in sweep], [p for _, p, _ in sweep], marker="o", ms=3)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"text check, threshold sweep (n={o['n']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "text_pr.png", dpi=110)
    print("\n".join(lines))
    print(f"wrote {out}/: results.json, results.md, text_pr.png", file=sys.stderr)
    return 0
