"""Single spoken words (the audio set's `words` source): TTS voices saying one word, asked for it.

Every other speech clip is a sentence or a prompt, and every named sound is a short clip, so a real
person saying one word ("dog", "jet") was heard as a sound or run on: "The sound of a guitar."
These clips teach that a short clip asked for its words is transcribed, whatever the sound-kind
head thinks it is.

Words: the object words of the Tux Paint captions (`tuxpaint.object_word`), minus every word of the
real-voice test set (`human_speech.human_words`), so that set's words stay unheard as single words.
Split by the word (`caption_split`): a word is in one split whatever the voice; val/test clips have
`meta.group` "single word". Two training voices per word (`per_word`), a random speaking rate each.
"""
from __future__ import annotations

import random
from pathlib import Path

from ..jsonl import SkipReport
from .human_speech import human_words
from .speech import RATES, VOICES, Utterance, key_order, speak
from .tuxpaint import caption_split, find_stamps, object_word

GROUP = "single word"


def spoken_words(limit: int | None = None) -> list[str]:
    """The words to speak (a deterministic hash sample of `limit` when given)."""
    heard_in_test = {word for word, *_ in human_words()}
    words = {object_word(stamp.caption) for stamp in find_stamps()[0]} - heard_in_test - {""}
    return key_order(sorted(words), limit)


def word_records(out: Path, val: float, test: float, seed: int, limit: int | None, per_word: int,
                 skipped: SkipReport, progress: bool) -> list[tuple[str, dict]]:
    jobs = []
    for word in spoken_words(limit):
        rng = random.Random(f"{seed}:words:{word}")
        for engine, voice in rng.sample(VOICES, min(per_word, len(VOICES))):
            jobs.append(Utterance(word, "tuxpaint", engine, voice, rng.choice(RATES), rng,
                                  caption_split(word, val, test), "words", GROUP))
    return speak(out, jobs, skipped, progress)
