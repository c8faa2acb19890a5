"""Read training/eval manifests in the formats the community uses.

LLaVA:     {"id": ..., "image": "a.png" | [...], "conversations": [{"from": "human", "value": "<image>\\nWhat is this?"},
                                                              {"from": "gpt", "value": "A frog."}]}
messages:  {"messages": [{"role": "user", "content": "<image>What is this?"}, {"role": "assistant", ...}],
            "images": ["a.png"]}  (ms-swift; OpenAI-style roles)
ShareGPT:  LLaVA's `conversations` plus LLaMA-Factory's `system` column and `images`/`videos`/`audios` lists
alpaca:    {"instruction": ..., "input": ..., "output": ..., "system": ..., "history": [[q, a], ...], "images": [...]}

`<image>` placeholders (generally `<modality>`) mark where each listed file goes, in order; content may
also be a list of typed parts. Relative paths resolve against `media_root` (default: the manifest's
folder). Media of a modality the run does not have (a `videos` list, a `<video>` tag) make the record a
skip with that reason, never text to train on. Every problem names the file, line and field. With `on_error="skip"` bad lines are counted
and reported, never silently dropped.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..modalities import MODALITIES

LLAVA_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
TOOL_ROLES = {"observation", "function_call", "function", "tool"}  # ShareGPT/OpenAI tool turns


@dataclass
class Sample:
    messages: list[dict]
    where: str  # "file:line", for error reports
    meta: dict = field(default_factory=dict)


@dataclass
class SkipReport:
    """Counts of skipped samples by reason, with the first few locations for each."""
    reasons: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, detail: str) -> None:
        self.reasons[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(detail)

    def add_error(self, where: str, error: Exception) -> None:
        """Count an error under a reason shared by all files it hit (paths collapsed, details dropped)."""
        msg = str(error)
        msg = msg[len(where) + 2:] if msg.startswith(f"{where}: ") else msg
        self.add(re.sub(r"\S*/[^\s:]*", "<path>", msg).split(" (")[0], f"{where}: {msg}")

    def merge(self, other: "SkipReport") -> None:
        for reason, n in other.reasons.items():
            self.reasons[reason] += n
            self.examples.setdefault(reason, other.examples[reason])

    @property
    def total(self) -> int:
        return sum(self.reasons.values())

    def summary(self) -> str:
        if not self.total:
            return "skipped 0 samples"
        lines = [f"skipped {self.total} samples:"]
        for reason, n in self.reasons.most_common():
            lines.append(f"  {n} x {reason}, e.g. {'; '.join(self.examples[reason])}")
        return "\n".join(lines)


def _media_list(rec: dict, modality: str, where: str) -> list[str]:
    listed = MODALITIES.get(modality).list_key if modality in MODALITIES else modality + "s"
    for key in (modality, listed):
        if key in rec and rec[key] is not None:
            v = rec[key]
            items = v if isinstance(v, list) else [v]
            if not all(isinstance(x, str) and x for x in items):
                raise DataError(f"{where}: field {key!r}: expected a path string or a list of path strings")
            return items
    return []


def resolve_media(p: str, root: Path, where: str, field_name: str) -> str:
    path = Path(p) if Path(p).is_absolute() else root / p
    try:
        if not path.is_file():
            raise DataError(f"{where}: field {field_name!r}: media file {_short(path)} does not exist")
        if path.stat().st_size == 0:
            raise DataError(f"{where}: field {field_name!r}: media file {path} is empty (0 bytes)")
    except OSError as e:  # a name too long for the file system, a path through a file...
        raise DataError(f"{where}: field {field_name!r}: media path {_short(path)} cannot be read: "
                        f"{e.strerror or type(e).__name__}") from None
    return str(path)


def _short(path: Path) -> str:
    s = str(path)
    return s if len(s) <= 200 else f"{s[:100]}...{s[-60:]} ({len(s):,} characters)"


def _to_parts(text: str, queues: dict[str, list[str]], where: str) -> list[dict]:
    pattern = re.compile("<(" + "|".join(map(re.escape, queues)) + ")>") if queues else None
    parts: list[dict] = []
    pos = 0
    for m in pattern.finditer(text) if pattern else []:
        before = text[pos:m.start()].strip("\n")
        if before:
            parts.append({"type": "text", "text": before})
        kind = m.group(1)
        if not queues[kind]:
            raise DataError(f"{where}: more <{kind}> placeholders than listed {kind} files")
        parts.append({"type": kind, "path": queues[kind].pop(0)})
        pos = m.end()
    rest = text[pos:].strip("\n")
    if rest:
        parts.append({"type": "text", "text": rest})
    return parts


def _typed_part(part: Any, root: Path, where: str, field_name: str, modalities: list[str]) -> dict:
    """A typed content part, its media path resolved like a listed file's (relative to the media root)."""
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise DataError(f"{where}: field {field_name!r}: expected a part like {{'type': 'text', 'text': ...}} "
                        "or {'type': 'image', 'path': ...}")
    kind = part["type"]
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise DataError(f"{where}: field '{field_name}.text': expected a string")
        return part
    if kind not in modalities:
        raise DataError(f"{where}: field '{field_name}.type': {kind!r} is not text or one of this run's "
                        f"modalities ({', '.join(modalities)})")
    if not isinstance(part.get("path"), str) or not part["path"]:
        raise DataError(f"{where}: field '{field_name}.path': expected the {kind} file's path")
    return {**part, "path": resolve_media(part["path"], root, where, f"{field_name}.path")}


# manifest field -> (is a turn well formed?, turn -> (role, content), what a turn must look like)
_FORMATS = {
    "conversations": (lambda t: isinstance(t.get("from"), str) and t["from"] in LLAVA_ROLES
                      and isinstance(t.get("value"), str),
                      lambda t: (LLAVA_ROLES[t["from"]], t["value"]), "{'from': 'human'|'gpt', 'value': str}"),
    "messages": (lambda t: isinstance(t.get("role"), str) and t["role"] in ("system", "user", "assistant")
                 and "content" in t,
                 lambda t: (t["role"], t["content"]), "{'role': 'user'|'assistant'|'system', 'content': ...}"),
}


def _alpaca(rec: dict, where: str) -> list[tuple[str, Any]]:
    """An alpaca row's turns: each `history` pair, then instruction (+ input) -> output."""
    turns: list[tuple[str, Any]] = []
    history = rec.get("history") or []
    if not isinstance(history, list) or not all(isinstance(h, list) and len(h) == 2 and all(isinstance(x, str) for x in h)
                                                for h in history):
        raise DataError(f"{where}: field 'history': expected a list of [question, answer] string pairs")
    for q, a in history:
        turns += [("user", q), ("assistant", a)]
    for key in ("instruction", "output"):
        if not isinstance(rec.get(key), str):
            raise DataError(f"{where}: field {key!r}: expected a string (alpaca format)")
    extra = rec.get("input") or ""
    if not isinstance(extra, str):
        raise DataError(f"{where}: field 'input': expected a string (alpaca format)")
    return turns + [("user", rec["instruction"] + ("\n" + extra if extra else "")), ("assistant", rec["output"])]


def _turns(rec: dict, where: str) -> tuple[str, list[tuple[str, Any]]]:
    """(format name, [(role, content)]) of a record in any of the formats above, its `system` column first."""
    fmt = next((k for k in _FORMATS if k in rec), "alpaca" if "instruction" in rec else None)
    if fmt is None:
        raise DataError(f"{where}: expected a 'conversations' (LLaVA/ShareGPT), 'messages' or 'instruction' "
                        "(alpaca) field")
    if fmt == "alpaca":
        raw = _alpaca(rec, where)
    else:
        well_formed, to_turn, shape = _FORMATS[fmt]
        turns = rec[fmt]
        if not isinstance(turns, list) or not turns:
            raise DataError(f"{where}: field '{fmt}': expected a non-empty list")
        raw = []
        for i, t in enumerate(turns):
            if isinstance(t, dict) and t.get("from", t.get("role")) in TOOL_ROLES:
                raise DataError(f"{where}: field '{fmt}'[{i}]: a tool turn ({t.get('from', t.get('role'))!r}): "
                                "tool calling is not supported")
            if not isinstance(t, dict) or not well_formed(t):
                raise DataError(f"{where}: field '{fmt}'[{i}]: expected {shape}")
            raw.append(to_turn(t))
    system = rec.get("system")
    if system:
        if not isinstance(system, str):
            raise DataError(f"{where}: field 'system': expected the system prompt as a string")
        if raw[0][0] == "system":
            raise DataError(f"{where}: both a 'system' field and a system turn: keep one")
        raw.insert(0, ("system", system))
    return fmt, raw


def _foreign_media(rec: dict, raw: list[tuple[str, Any]], where: str, modalities: list[str]) -> None:
    """Media of a modality this run has no adapter for: refused (the record is skipped, counted by this
    reason), never left in as a literal `<video>` tag or an ignored list."""
    for m in MODALITIES:
        if m in modalities:
            continue
        listed = _media_list(rec, m, where)
        tagged = any(isinstance(c, str) and f"<{m}>" in c for _, c in raw)
        if listed or tagged:
            what = f"lists {len(listed)} {m} file(s)" if listed else f"has a <{m}> tag"
            raise DataError(f"{where}: the record {what}, and this run has no {m} modality")


def parse_record(rec: Any, where: str, modalities: list[str], root: Path) -> Sample:
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    fmt, raw = _turns(rec, where)
    _foreign_media(rec, raw, where, modalities)
    queues = {m: [resolve_media(p, root, where, m) for p in _media_list(rec, m, where)] for m in modalities}
    # LLaVA convention: a single listed file with no placeholder goes before the first user text
    for m, q in queues.items():
        if len(q) == 1 and not any(isinstance(c, str) and f"<{m}>" in c for _, c in raw):
            k = next((i for i, (r, _) in enumerate(raw) if r == "user"), None)
            if k is not None and isinstance(raw[k][1], str):
                raw[k] = (raw[k][0], f"<{m}>\n" + raw[k][1])
    messages = []
    for i, (role, content) in enumerate(raw):
        if isinstance(content, str):
            content = _to_parts(content, queues, where)
        elif isinstance(content, list):
            content = [_typed_part(p, root, where, f"{fmt}[{i}].content[{j}]", modalities)
                       for j, p in enumerate(content)]
        else:
            raise DataError(f"{where}: message content must be a string or a list of parts")
        messages.append({"role": role, "content": content})
    for m, q in queues.items():
        if q:
            raise DataError(f"{where}: {len(q)} listed {m} file(s) have no <{m}> placeholder")
    if not any(msg["role"] == "assistant" for msg in messages):
        raise DataError(f"{where}: no assistant turn, nothing to learn or score")
    meta = rec.get("meta") if isinstance(rec.get("meta"), dict) else {}
    return Sample(messages, where, meta)


def parsed_record(rec: Any, where: str, modalities: list[str], root: Path) -> Sample:
    """parse_record, where a record of a shape no check foresaw is still that line's DataError."""
    try:
        return parse_record(rec, where, modalities, root)
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{where}: a record of an unexpected shape ({type(e).__name__}: {str(e)[:200]})") from None


def _records(p: Path):
    """(where, parsed record or DataError) for each sample of a JSONL file or a LLaVA-style JSON array."""
    if p.suffix == ".json":  # LLaVA ships its instruction sets as one JSON array
        try:
            data = json.loads(_utf8(p.read_bytes(), p))
        except json.JSONDecodeError as e:
            raise DataError(f"{p}:{e.lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
        except ValueError as e:  # an integer past Python's digit limit
            raise DataError(f"{p}: {e}") from None
        if not isinstance(data, list):
            raise DataError(f"{p}: expected a JSON array of samples (LLaVA format), got {type(data).__name__}")
        for i, rec in enumerate(data):
            yield f"{p}[{i}]", rec
        return
    with p.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield f"{p}:{n}", DataError(f"{p}:{n}: byte 0x{raw[e.start]:02x} at column {e.start + 1} is not UTF-8")
                continue
            if not line.strip():
                continue
            try:
                yield f"{p}:{n}", json.loads(line)
            except json.JSONDecodeError as e:
                yield f"{p}:{n}", DataError(f"{p}:{n}: malformed JSON ({e.msg} at column {e.colno})")
            except ValueError as e:  # an integer past Python's digit limit
                yield f"{p}:{n}", DataError(f"{p}:{n}: {e}")
            except RecursionError:
                yield f"{p}:{n}", DataError(f"{p}:{n}: JSON nested too deeply")


def _utf8(raw: bytes, p: Path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"{p}:{line}: byte 0x{raw[e.start]:02x} is not UTF-8") from None


def read_jsonl(path: str | Path, modalities: list[str], media_root: str | None = None,
               on_error: str = "fail") -> tuple[list[Sample], SkipReport]:
    """Samples of a manifest: JSONL (one sample per line) or, for `.json`, a LLaVA-style array."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: manifest not found")
    root = Path(media_root) if media_root else p.parent
    samples, skipped = [], SkipReport()
    for where, rec in _records(p):
        try:
            if isinstance(rec, DataError):
                raise rec
            samples.append(parsed_record(rec, where, modalities, root))
        except DataError as e:
            if on_error == "fail":
                raise
            skipped.add_error(where, e)
    return samples, skipped
