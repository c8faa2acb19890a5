"""Instruction data from our real labels (LLaVA's three kinds, AnyMAL's synthetic augmentation).

`anymal data generate --from data/tuxpaint/train.jsonl --from data/hapt/train.jsonl ...` reads built
manifests and, from each sample's *real* metadata (object, category, motion direction, activity,
furniture room), writes multi-turn instruction samples of three kinds:

    conversation  2-3 questions with definite answers read off the labels
    detail        "Describe ... in detail." -> a paragraph stating every known fact
    reasoning     a question that needs one inference step from the facts (is it alive? where will it
                  end up? is the person moving from place to place?), answered with the reason

Templates write every answer, so every answer is true by construction. `--opt llm=true` lets the
local LLM rephrase the detail paragraphs; a rephrasing is kept only if it still states every fact
(each key phrase present, nothing cut off) and otherwise the template stays — the acceptance rate is
printed, which is how "good enough" is measured rather than assumed. Every record carries its
provenance (source manifest and line, kind, generator); duplicates (same media, kind and turns)
are dropped and counted; each output record is re-read by the training reader before it is written.
"""
from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from ...errors import DataError
from ...modalities import AUDIO, IMAGE, IMU, MODALITIES, POINTS, VIDEO
from ..jsonl import parse_record

# Tux Paint / video stamp categories -> (is it alive?, a fact sentence)
ALIVE = {"animals": True, "plants": True, "people": True}
CATEGORY_FACT = {
    "animals": "an animal", "plants": "a plant", "people": "a person", "food": "something to eat",
    "vehicles": "a vehicle", "town": "something found in a town", "household": "a household object",
    "clothes": "a piece of clothing", "seasonal": "a seasonal decoration or symbol", "space": "something from space",
    "sports": "sports equipment", "military": "military equipment", "medical": "a medical item",
    "hobbies": "something used for a hobby", "naturalforces": "a force of nature",
}
ROOMS = {"Living room": "the living room", "Bedroom": "a bedroom", "Kitchen": "the kitchen", "Bathroom": "a bathroom",
         "Office": "an office", "Exterior": "outdoors, in a garden or on a terrace"}
MOVING = {1: True, 2: True, 3: True, 4: False, 5: False, 6: False}  # HAPT labels; 7-12 are posture changes
END_SIDE = {"left to right": "on the right side", "right to left": "on the left side",
            "top to bottom": "at the bottom", "bottom to top": "at the top"}


def _noun(meta: dict) -> str:
    cap = meta.get("caption") or meta.get("name") or meta.get("object", "object")
    return cap.rstrip(".")


def _lower_first(s: str) -> str:
    first = s.split(" ", 1)[0]
    return s if len(first) > 1 and first.isupper() else s[:1].lower() + s[1:]  # "A frog" -> "a frog", not "NASA"


def _image(meta: dict, rng: random.Random, what: str = IMAGE.name) -> dict[str, tuple[list, list[str]]]:
    thing, cat = _noun(meta), meta.get("category", "")
    kind = CATEGORY_FACT.get(cat)
    conv = [(f"What is in this {what}?", f"{thing}."), ("Name the main object in one word.", f"{meta['object'].capitalize()}.")]
    if kind:
        conv.append(("What kind of thing is it?", f"It is {kind}."))
    detail = f"The {what} shows {_lower_first(thing)}" + (f", which is {kind}" if kind else "") + "."
    out = {"conversation": (conv, [meta["object"]]), "detail": ([(f"Describe this {what} in detail.", detail)],
                                                                [meta["object"]] + ([kind] if kind else []))}
    if cat:
        alive = ALIVE.get(cat, False)
        out["reasoning"] = ([(f"Is the thing in this {what} alive?",
                              f"{'Yes' if alive else 'No'}: it is {_lower_first(thing)}, "
                              f"{'a living thing' if alive else 'not a living thing'}.")], [meta["object"]])
    return out


def _video(meta: dict, rng: random.Random) -> dict:
    out = _image(meta, rng, "clip")
    d = meta["direction"]
    out["conversation"][0].append(("Which way does it move?", f"From {d}."))
    out["detail"] = ([("Describe this clip in detail.",
                       f"The clip shows {_lower_first(_noun(meta))} moving from {d} across a background"
                       + (", with its sound playing." if meta.get("has_audio") else "."))], [meta["object"], d])
    out["reasoning"] = ([("Where is the object at the end of the clip?",
                          f"It ends {END_SIDE[d]}, because it moves from {d}.")], [END_SIDE[d]])
    return out


def _imu(meta: dict, rng: random.Random) -> dict:
    from .hapt_windows import CAPTIONS

    label, act = meta["label"], meta["activity"]
    cap = CAPTIONS[label][0]
    out = {"conversation": ([("What is the person doing?", cap), ("Name the activity in a few words.", f"{act.capitalize()}.")],
                            [act]),
           "detail": ([("Describe the motion in detail.",
                        f"{cap} The recording is {meta.get('seconds', 0):.1f} seconds of a phone's accelerometer and "
                        "gyroscope worn at the waist.")], [cap.rstrip(".")])}
    if label in MOVING:
        moving = MOVING[label]
        out["reasoning"] = ([("Is the person going from one place to another?",
                              f"{'Yes' if moving else 'No'}: the person is {act}, which "
                              f"{'moves them along' if moving else 'keeps them in place'}.")], [act])
    else:
        out["reasoning"] = ([("Is the person changing posture?", f"Yes: the movement is {act}, a change of posture.")],
                            [act])
    return out


def _points(meta: dict, rng: random.Random) -> dict:
    from .furniture import CATEGORY_PHRASES

    name, cat = meta["name"], meta["category"]
    phrase = CATEGORY_PHRASES.get(cat, "an object")
    out = {"conversation": ([("What is this 3D object?", f"{name}."), ("What kind of object is it?", f"It is {phrase}.")],
                            [name.lower()]),
           "detail": ([("Describe this 3D model in detail.", f"The point cloud shows {_lower_first(name)}, {phrase}.")],
                      [name.lower()])}
    if cat in ROOMS:
        out["reasoning"] = ([("Where in a home would you usually find it?",
                              f"In {ROOMS[cat]}, since it is {phrase}.")], [ROOMS[cat]])
    return out


def _sound(meta: dict, rng: random.Random) -> dict:
    thing = _noun(meta).removeprefix("The sound of ").removeprefix("the sound of ")
    return {"conversation": ([("What makes this sound?", f"{_noun(meta)}.")], [meta["object"]]),
            "detail": ([("Describe this sound in detail.", f"This is {_lower_first(_noun(meta))}: the sound {thing} makes.")],
                       [meta["object"]])}


# which generator a record gets: by its media field and metadata
def _generator(rec: dict) -> tuple[str, Callable] | None:
    meta = rec.get("meta") or {}
    if VIDEO.list_key in rec and "direction" in meta:
        return VIDEO.name, _video
    if IMU.list_key in rec and "label" in meta:
        return IMU.name, _imu
    if POINTS.list_key in rec and "category" in meta:
        return POINTS.name, _points
    if AUDIO.list_key in rec and meta.get("kind") == "sound":
        return AUDIO.name, _sound
    if IMAGE.list_key in rec and "object" in meta and len(rec[IMAGE.list_key]) == 1:
        return IMAGE.name, _image
    return None


def _llm_rephrase(model, text: str, facts: list[str]) -> str | None:
    """The local LLM's rephrasing, or None if it only copied the text, dropped a fact or ran off."""
    reply = model.chat(f"Rewrite this description in different words, keeping every fact:\n{text}",
                       max_new_tokens=60)
    low = reply.lower()
    if low.strip() == text.lower().strip():
        return None
    if not reply.strip().endswith((".", "!")) or any(f.lower() not in low for f in facts) or len(reply) > 3 * len(text):
        return None
    return reply.strip()


def generate(sources: list[str], out: str, kinds: str = "conversation,detail,reasoning", llm: bool = False,
             seed: int = 0, limit: int | None = None, progress: bool = True) -> dict:
    wanted = [k.strip() for k in kinds.split(",")]
    bad = set(wanted) - {"conversation", "detail", "reasoning"}
    if bad:
        raise DataError(f"kinds: unknown {sorted(bad)}; choose from conversation, detail, reasoning")
    model = None
    if llm:
        from ...model.anymal import AnyMAL

        model = AnyMAL.from_pretrained()
    rng = random.Random(seed)
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    stats: Counter = Counter()
    seen: set[str] = set()
    records = []
    for src in sources:
        path = Path(src)
        if not path.is_file():
            raise DataError(f"{src}: manifest not found (build it with `anymal data build ...`)")
        lines = path.read_text().splitlines()[:limit]
        for n, line in enumerate(tqdm(lines, desc=f"generating from {path}", disable=not progress), 1):
            rec = json.loads(line)
            gen = _generator(rec)
            if gen is None:
                stats["no usable labels"] += 1
                continue
            modality, fn = gen
            key_media = {k: [os.path.relpath(path.parent / p, out_path.parent) for p in rec[k]]
                         for k in (m.list_key for m in MODALITIES.values()) if k in rec}
            for kind, (turns, facts) in fn(rec["meta"], rng).items():
                if kind not in wanted:
                    continue
                generator = "template"
                if kind == "detail" and model is not None:
                    new = _llm_rephrase(model, turns[0][1], facts)
                    stats["llm rephrasings kept" if new else "llm rephrasings rejected"] += 1
                    if new:
                        turns, generator = [(turns[0][0], new)], f"llm:{model.config.llm.id}"
                messages = []
                for i, (q, a) in enumerate(turns):
                    messages += [{"role": "user", "content": (f"<{modality}>" if i == 0 else "") + q},
                                 {"role": "assistant", "content": a}]
                sig = json.dumps([key_media, kind, messages], sort_keys=True)
                if sig in seen:
                    stats["duplicates dropped"] += 1
                    continue
                seen.add(sig)
                new_rec = {"messages": messages, **key_media,
                           "meta": {**rec["meta"], "kind": kind, "modality": modality,
                                    "provenance": {"source": f"{src}:{n}", "generator": generator}}}
                parse_record(new_rec, f"{out}:{len(records) + 1}", MODALITIES.names(), out_path.parent)  # validate
                records.append(new_rec)
                stats[f"{modality}/{kind}"] += 1
    rng.shuffle(records)
    with out_path.open("w") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return {"records": len(records), "out": str(out_path), **dict(sorted(stats.items()))}
