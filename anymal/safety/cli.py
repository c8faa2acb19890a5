"""`anymal safety train | eval`: rebuild the text and image heads; measure each check's precision/recall."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..modalities import IMAGE

CORPUS = "data/safety-text"


def add_parser(sub) -> None:
    s = sub.add_parser("safety", help="the safety checks: retrain the text and image heads, measure precision/recall")
    ssub = s.add_subparsers(dest="what", required=True)
    d = ssub.add_parser("data", help="build the text safety corpus (benign and harmful text by source and category)")
    d.add_argument("--out", default=CORPUS)
    d.set_defaults(fn=cmd_data)
    t = ssub.add_parser("train", help="retrain the text heads (MiniLM's, and the request head on the LLM's reading "
                                      "of each prompt: a few minutes) and the image head (captioned pictures) on "
                                      "their train splits")
    t.add_argument("--images", nargs="*", default=None, metavar="MANIFEST",
                   help="captioned image manifests (default: the built openclipart, emoji and tuxpaint sets "
                        "that exist; none = keep the shipped image head)")
    t.add_argument("--corpus", default=CORPUS, help="the text corpus `anymal safety data` built")
    t.add_argument("--kind", choices=["mlp", "linear"], default="mlp", help="the MiniLM head (default mlp)")
    t.add_argument("--false-refusals", type=float, default=0.005,
                   help="the share of the validation split's benign texts the MiniLM head's threshold may refuse "
                        "(the request head's: 0.002)")
    t.set_defaults(fn=cmd_train)
    e = ssub.add_parser("eval", help="precision/recall of the text and image checks on held-out labelled sets")
    e.add_argument("--images", nargs="*", default=None, metavar="MANIFEST",
                   help="captioned image manifests (default: the built openclipart, emoji and tuxpaint sets "
                        "that exist); a picture whose words name a weapon is a positive")
    e.add_argument("--corpus", default=CORPUS)
    e.add_argument("--text-threshold", type=float, default=None, help="the MiniLM head's (default: its calibrated one)")
    e.add_argument("--compare", action="store_true",
                   help="also train the linear head and the MLP on the corpus and put their rows side by side")
    e.add_argument("--image-threshold", type=float, default=0.5)
    e.add_argument("--out", default="runs/safety")
    e.set_defaults(fn=cmd_eval)


def _image_sets(given: list[str] | None) -> list[str]:
    from .image import IMAGE_SETS

    return given if given is not None else [m for m in IMAGE_SETS if Path(m).is_file()]


def cmd_data(a) -> int:
    from .corpus import build_corpus

    summary = build_corpus(a.out)
    for split, counts in summary.items():
        print(f"{split}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"wrote {a.out}/: {', '.join(summary)} (.jsonl), summary.json", file=sys.stderr)
    return 0


def cmd_train(a) -> int:
    from .image import HEAD as IMAGE_HEAD
    from .image import labelled_images, train_image_head
    from .text import HEAD, REQUEST_HEAD, REQUEST_TARGET, train_request_head
    from .text_eval import corpus, train_on

    splits = corpus(a.corpus)
    benign = sum(r["label"] == "safe" for r in splits["val"])
    clf = train_on(splits, a.kind, a.false_refusals, out=HEAD)
    print(f"wrote {HEAD} (the output check: {a.kind} head on {len(splits['train'])} texts; threshold "
          f"{clf.threshold:.3f}, calibrated to refuse at most {a.false_refusals:.1%} of the {benign} benign "
          "validation texts)", file=sys.stderr)
    print("reading every text with the LLM for the request head (a few minutes) ...", file=sys.stderr)
    req = train_request_head(splits["train"], splits["val"])
    print(f"wrote {REQUEST_HEAD} (the input check: linear head on the LLM's prompt state; threshold "
          f"{req.threshold:.3f}, calibrated to refuse at most {REQUEST_TARGET:.1%} of them)", file=sys.stderr)
    manifests = _image_sets(a.images)
    if not manifests:
        print("no captioned image sets built: the image head is kept as it is "
              "(anymal data build openclipart|emoji|tuxpaint to rebuild it)", file=sys.stderr)
        return 0
    items, ambiguous = labelled_images(manifests)
    train = [i for i in items if i.split == "train"]
    train_image_head(train)
    print(f"wrote {IMAGE_HEAD} ({len(train)} training pictures, {sum(i.weapon for i in train)} with weapons; "
          f"{ambiguous} ambiguous ones left out) from {', '.join(manifests)}", file=sys.stderr)
    return 0


def _sweep(scores: list[float], truth: list[bool]) -> list[tuple[float, float, float]]:
    """(threshold, precision, recall) over thresholds 0.05 ... 0.95."""
    from .text import precision_recall

    out = []
    for t in [x / 20 for x in range(1, 20)]:
        pr = precision_recall([s >= t for s in scores], truth)
        out.append((t, pr["precision"], pr["recall"]))
    return out


def _image_result(paths: list[str], truth: list[bool], scores: list[float], words: list[str], threshold: float) -> dict:
    from .text import precision_recall

    res = precision_recall([s >= threshold for s in scores], truth)
    res["flagged_examples"] = [f"{Path(p).name} ({w[:40]})" for p, w, s in zip(paths, words, scores) if s >= threshold][:12]
    res["missed_examples"] = [f"{Path(p).name} ({w[:40]})" for p, w, s, t in zip(paths, words, scores, truth)
                              if t and s < threshold][:12]
    return res


def evaluate_images(manifests: list[str], threshold: float) -> tuple[dict, dict]:
    """Both image checks side by side: the trained head on the held-out 30%, the perception check
    (nothing trained) on the same 30% and on every labelled picture. ({check: result}, {check: sweep})."""
    from .image import ImageCheck, PerceptionCheck, labelled_images

    items, ambiguous = labelled_images(manifests)
    test = [i for i in items if i.split == "test"]
    perception = dict(zip((i.path for i in items), PerceptionCheck(threshold).scores([i.path for i in items])))
    runs = {"head (held out)": (test, ImageCheck(threshold=threshold).scores([i.path for i in test])),
            "perception (held out)": (test, [perception[i.path] for i in test]),
            "perception (every picture)": (items, [perception[i.path] for i in items])}
    results, sweeps = {}, {}
    for name, (group, scores) in runs.items():
        truth = [i.weapon for i in group]
        results[name] = {**_image_result([i.path for i in group], truth, scores, [i.words for i in group], threshold),
                         "ambiguous_left_out": ambiguous}
        sweeps[name] = _sweep(scores, truth)
    return results, sweeps


def _plot_sweep(points, xlabel: str, ylabel: str, title: str, path: Path, symlog_x: bool = False) -> None:
    """A curve over thresholds: points (threshold, x, y), every few labelled with their threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.plot([x for _, x, _ in points], [y for _, _, y in points], marker="o", ms=3)
    for t, x, y in points[::3]:
        ax.annotate(f"{t:.2f}", (x, y), fontsize=7, textcoords="offset points", xytext=(3, 3))
    if symlog_x:
        ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cmd_eval(a) -> int:
    from .text_eval import INPUT_CHECK, OUTPUT_CHECK, evaluate

    text, lines, sweep = evaluate(a.corpus, a.text_threshold, a.compare)
    manifests = _image_sets(a.images)
    image, image_sweep = evaluate_images(manifests, a.image_threshold) if manifests else (None, None)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"text": text, IMAGE.name: image and {"threshold": a.image_threshold, "sets": manifests, **image},
              "text_threshold_sweep": sweep, "image_threshold_sweep": image_sweep}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    if image:
        lines += ["", "| image check | held-out set | n (positives) | precision | recall |", "|---|---|---|---|---|"]
    for name, r in (image or {}).items():
        lines.append(f"| image (weapons), {name} @ {a.image_threshold} | captioned pictures"
                     f"{', 30% held out by their words' if 'held out' in name else ''} | {r['n']} ({r['positives']}) "
                     f"| {r['precision']:.3f} | {r['recall']:.3f} |")
    for name in (INPUT_CHECK, OUTPUT_CHECK):
        lines += ["", f"- {name}: everyday texts refused: {'; '.join(text[name]['everyday refused'][:10]) or 'none'}",
                  f"- {name}: harmful texts missed (first ones): {'; '.join(text[name]['harmful missed'][:6]) or 'none'}"]
    for name, r in (image or {}).items():
        lines += [f"- image, {name}: {r['ambiguous_left_out']} ambiguous pictures left out; "
                  f"flagged: {'; '.join(r['flagged_examples'][:6])}; missed: {'; '.join(r['missed_examples'][:6])}"]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    _plot_sweep(sweep, "false refusals, everyday text (unseen sources)", "recall, harmful text (unseen sources)",
                "text check over thresholds", out / "text_sweep.png", symlog_x=True)
    for k, (name, r) in enumerate((image or {}).items()):
        _plot_sweep([(t, rec, p) for t, p, rec in image_sweep[name]], "recall", "precision",
                    f"image check, {name} (n={r['n']}, {r['positives']} weapons)", out / f"image_pr_{k}.png")
    print("\n".join(lines))
    print(f"wrote {out}/: results.json, results.md, text_sweep.png{', image_pr_*.png' if image else ''}", file=sys.stderr)
    return 0
