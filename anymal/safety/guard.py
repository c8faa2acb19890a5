"""AnyMAL's inference-time safety design (§5): checks on the input text, the input image, the
output text (while it streams) and the input-image + output-text pair.

Each check can be switched off and has its own threshold. The pair check flags an output sentence
that is borderline on its own (score >= `pair_text_threshold`, below the output threshold) when an
input image is borderline violent (P(weapon) >= `pair_image_threshold`): the picture raises the
stakes of the words. A flagged input is answered with the refusal and never reaches the model; a
flagged output sentence is never released, and generation stops.

Streaming (`hold`): with "words" (the default) the output check reads the sentence so far at every
completed word and releases the words it passed, so text streams word by word; a start it does not pass
is held, not refused: the rest of that sentence waits, and the whole sentence decides (a fragment such as
"To convert Celsius to" is not a sentence the check was made for, and flagged everyday answers' first
words in the server benchmark); with "sentences" nothing
of a sentence is released before the whole of it passed; with "answer" nothing is released before the
whole answer passed. A refusal never follows released text: when a check flags a sentence after some of
the answer was released, the stream ends there (finish_reason content_filter) with only checked text;
the refusal is said only where nothing was released yet (always, with "answer", and for every
non-streamed request, which holds the whole answer).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError
from ..modalities import IMAGE
from . import HOLDS
from .image import ImageCheck, PerceptionCheck, build_image_check
from .nudity import NudityCheck
from .text import REQUEST_HEAD, EitherHead, TextClassifier, Verdict

_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")
_FINISHED = re.compile(r"[.!?][\"')\]]*\s*$")  # a sentence that ends where the answer ends


@dataclass
class SafetyConfig:
    input_text: bool = True
    input_image: bool = False  # off by default: measured useless on our pictures (see `anymal safety eval`)
    output_text: bool = True
    pair: bool = True
    text_threshold: float | None = None  # None: the text head's own, calibrated when it was trained
    image_threshold: float = 0.5  # P(weapon) from the image check
    image_method: str = "perception"  # perception: Lite3's weapon classes | head: the trained Lite0 head
    pair_text_threshold: float = 0.3
    pair_image_threshold: float = 0.3
    nudity: bool = False  # optional NudeNet check on input images (safety/nudity.py): off, its licence is unclear
    nudity_threshold: float = 0.5
    refusal: str = "I can't help with that. (flagged by the {check} check: {category})"
    hold: str = "words"  # streamed output held back until the check passed a word / a sentence / the answer

    def __post_init__(self):
        if self.hold not in HOLDS:
            raise ConfigError(f"safety hold={self.hold!r}: expected one of {', '.join(HOLDS)}")


@dataclass
class Flag:
    check: str  # input_text | input_image | input_nudity | output_text | pair
    verdict: Verdict

    def refusal(self, template: str) -> str:
        return template.format(check=self.check.replace("_", " "), category=self.verdict.category)


class Guard:
    """`request`: the LLM's reading of a request (text.REQUEST_HEAD); `text`: MiniLM's (text.HEAD), cheap
    enough for every streamed word. The input check flags what either flags; output and pair checks use
    `text` alone."""

    def __init__(self, config: SafetyConfig | None = None, text: TextClassifier | None = None,
                 image: PerceptionCheck | ImageCheck | None = None, nudity: NudityCheck | None = None,
                 request: TextClassifier | None = None):
        self.config = c = config or SafetyConfig()
        self.text = text or (TextClassifier.load(threshold=c.text_threshold)
                             if c.input_text or c.output_text or c.pair else None)
        self.request = request or (TextClassifier.load(REQUEST_HEAD) if c.input_text else None)
        self.requests = EitherHead(*(h for h in (self.request, self.text) if h is not None))
        self.image = image or (build_image_check(c.image_method, c.image_threshold) if c.input_image or c.pair else None)
        self.nudity = nudity or (NudityCheck(c.nudity_threshold) if c.nudity else None)

    @staticmethod
    def _texts(messages: list[dict]) -> list[tuple[str, str]]:
        """(role, text) of every user and system text: a system prompt is judged as an instruction."""
        out = []
        for m in messages:
            if m["role"] == "assistant":
                continue
            content = m["content"]
            texts = [content] if isinstance(content, str) else [p["text"] for p in content if p.get("type") == "text"]
            out += [(m["role"], t) for t in texts if t.strip()]
        return out

    @staticmethod
    def _parts(messages: list[dict], kind: str) -> list:
        """The user's and system's media parts of one modality (bytes, a decoded input or a path)."""
        out = []
        for m in messages:
            if m["role"] == "assistant" or not isinstance(m["content"], list):
                continue
            out += [p.get(kind) if p.get(kind) is not None else p.get("path") for p in m["content"] if p.get("type") == kind]
        return [x for x in out if x is not None]

    def check_input(self, messages: list[dict]) -> tuple[Flag | None, float]:
        """(the first failed input check or None, the input images' highest P(weapon))."""
        c, image_score = self.config, 0.0
        if c.input_text:
            for v in self.requests.check(self._texts(messages)):
                if v.unsafe:
                    return Flag("input_text", v), image_score
        images = self._parts(messages, IMAGE.name)
        if images and self.image and (c.input_image or c.pair):
            verdicts = self.image.check(images)
            image_score = max(v.score for v in verdicts)
            for v in verdicts:
                if c.input_image and v.score >= c.image_threshold:
                    return Flag("input_image", v), image_score
        if images and self.nudity and c.nudity:
            for v in self.nudity.check(images):
                if v.unsafe:
                    return Flag("input_nudity", v), image_score
        return None, image_score

    def check_sentence(self, sentence: str, image_score: float) -> Flag | None:
        c = self.config
        if not sentence.strip() or not (c.output_text or c.pair) or not self.text:
            return None
        v = self.text.check([sentence])[0]
        if c.output_text and v.unsafe:
            return Flag("output_text", v)
        if c.pair and image_score >= c.pair_image_threshold and v.score >= c.pair_text_threshold:
            return Flag("pair", v)
        return None


class OutputFilter:
    """Holds streamed text back until the check has seen it: each completed word (with the sentence
    so far), each whole sentence, or the whole answer (`hold`, default the guard's); releases what
    passed, stops on a flag."""

    def __init__(self, guard: Guard, image_score: float = 0.0, hold: str | None = None):
        self.guard, self.image_score = guard, image_score
        self.hold = hold or guard.config.hold
        self.said, self.buf = "", ""  # the current sentence: released so far, held back
        self.passed = ""  # checked whole sentences not released yet (hold="answer")
        self.waiting = False  # hold="words": a start of the current sentence did not pass, its end decides
        self.flag: Flag | None = None

    def push(self, piece: str) -> str:
        if self.flag:
            return ""
        self.buf += piece
        out = ""
        while (m := _SENTENCE_END.search(self.buf)) is not None:
            sentence, self.buf = self.buf[:m.end()], self.buf[m.end():]
            if not self._ok(self.said + sentence):  # a sentence is judged whole at its end
                return "" if self.hold == "answer" else out
            out, self.said, self.waiting = out + sentence, "", False
        if self.hold == "answer":
            self.passed += out
            return ""
        cut = self.buf.rfind(" ")  # the words before it are complete
        if self.hold == "words" and not self.waiting and cut > 0 and self.buf[:cut].strip():
            words = self.buf[:cut]
            self.waiting = self.guard.check_sentence(self.said + words, self.image_score) is not None
            if not self.waiting:
                out, self.said, self.buf = out + words, self.said + words, self.buf[cut:]
        return out

    def close(self, cut: bool = False) -> str:
        """What is left to release at the end of the answer. `cut`: the answer stopped at its token limit,
        so a last sentence without its end is unfinished: one the check does not pass is withheld (the
        answer ends before it, finish_reason stays "length") rather than refusing the answer for words
        cut mid-sentence ("To convert Celsius you multiply the temperature by" read alone)."""
        rest, self.buf = self.buf, ""
        if self.flag is not None:
            return ""
        flag = self.guard.check_sentence(self.said + rest, self.image_score)
        if flag is None:
            return self.passed + rest
        if cut and not _FINISHED.search(rest):
            return self.passed
        self.flag, self.passed = flag, ""
        return ""

    def _ok(self, sentence: str) -> bool:
        self.flag = self.guard.check_sentence(sentence, self.image_score)
        if self.flag:
            self.buf = self.passed = ""
        return self.flag is None
