"""Questions users ask about a picture, and their answers, in several phrasings each (`photo-qa`).

Every function takes what is true of the picture (its name, colour, layout...) and a seeded `rng`, and
returns (question, answer): the builder knows the truth by construction, this module only says it the
way people do. The first word of a yes/no answer is always "Yes" or "No", and every answer to a colour,
count or where question contains the colour word, the number word or the side: the evaluation's
"addresses its question" check reads exactly that (eval/question_types.py).
"""
from __future__ import annotations

import random

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
IRREGULAR_PLURALS = {"sheep": "sheep", "fish": "fish", "deer": "deer", "mouse": "mice", "goose": "geese",
                     "person": "people", "child": "children", "man": "men", "woman": "women", "tooth": "teeth",
                     "foot": "feet", "ox": "oxen", "moose": "moose", "bison": "bison", "salmon": "salmon",
                     "shrimp": "shrimp", "cactus": "cacti", "scissors": "scissors", "pliers": "pliers",
                     "tweezers": "tweezers", "glasses": "glasses", "trousers": "trousers", "jeans": "jeans"}
UNSURE = "I can't tell"  # every unsure answer starts with it; the evaluation looks for it


def is_plural(name: str) -> bool:
    """'grapes', 'pliers' (a name given as a plural); not 'glass', 'cactus', 'octopus', 'iris'."""
    last = name.split()[-1]
    return last.endswith("s") and not last.endswith(("ss", "us", "is")) or IRREGULAR_PLURALS.get(last) == last != name


def article(name: str) -> str:
    """'an apple', 'a dog', 'grapes' (plurals take none), 'the Eiffel Tower' (proper names)."""
    if name[:1].isupper():
        return name if name.startswith("The ") else f"the {name}"
    if is_plural(name):
        return name
    return ("an " if name[:1] in "aeiou" else "a ") + name


def plural(name: str) -> str:
    *head, last = name.split()
    if is_plural(name):
        return name
    if last in IRREGULAR_PLURALS:
        last = IRREGULAR_PLURALS[last]
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        last += "es"
    elif last.endswith("y") and last[-2:-1] not in tuple("aeiou"):
        last = last[:-1] + "ies"
    else:
        last += "s"
    return " ".join([*head, last])


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _pick(rng: random.Random, options: list[str], **values: str) -> str:
    return rng.choice(options).format(**values)


def what(name: str, rng: random.Random, photo: bool) -> tuple[str, str]:
    q = rng.choice(["What is this?", "What is in this picture?", "What do you see?", "What does this picture show?",
                    "Name what is shown.", "What is this a picture of?", "Briefly, what is in the image?",
                    "What am I looking at?", "Can you tell me what this is?", "What's in the image?"])
    a = _pick(rng, ["A photo of {a}.", "It is {a}.", "This is {a}.", "{A}.", "It's {a}.", "I see {a}."]
              if photo else ["{A}.", "It is {a}.", "This is {a}.", "A picture of {a}.", "I see {a}."],
              a=article(name), A=cap(article(name)))
    return q, a


def yes_no(asked: str, truth: str, rng: random.Random) -> tuple[str, str]:
    """Asked whether `asked` is shown when `truth` is; the answer is yes exactly when they are the same."""
    q = _pick(rng, ["Is there {a} in this picture?", "Is this {a}?", "Do you see {a}?", "Does this picture show {a}?",
                    "Can you see {a} here?", "Is there {a} in the image?", "Is {a} shown?", "Is it {a}?"],
              a=article(asked))
    if asked == truth:
        a = _pick(rng, ["Yes.", "Yes, there is {a}.", "Yes, it is {a}.", "Yes, I can see {a}."], a=article(truth))
    else:
        a = _pick(rng, ["No.", "No, it is {t}.", "No, this is {t}, not {a}.", "No, I see {t}."],
                  a=article(asked), t=article(truth))
    return q, a


def colour_of(name: str | None, colour: str, rng: random.Random) -> tuple[str, str]:
    """The main colour of the named object, or of the whole picture when `name` is None."""
    if name is None:
        q = rng.choice(["What is the main colour of this picture?", "What colour is this picture mostly?",
                        "Which colour do you see most?", "What color is the image mostly?"])
        return q, _pick(rng, ["Mostly {c}.", "{C}.", "It is mostly {c}."], c=colour, C=cap(colour))
    q = _pick(rng, ["What colour is the {n}?", "What color is the {n}?", "What is the main colour of the {n}?",
                    "Which colour is the {n}?", "What colour is it?"], n=name)
    return q, _pick(rng, ["{C}.", "It is {c}.", "The {n} is {c}.", "Mostly {c}."], c=colour, C=cap(colour), n=name)


def background_colour(colour: str, rng: random.Random) -> tuple[str, str]:
    q = rng.choice(["What colour is the background?", "What color is the background?",
                    "Which colour is behind it?"])
    return q, _pick(rng, ["{C}.", "The background is {c}.", "It is {c}."], c=colour, C=cap(colour))


def how_many(name: str, n: int, rng: random.Random) -> tuple[str, str]:
    word = NUMBER_WORDS[n]
    q = _pick(rng, ["How many {p} are there?", "How many {p} do you see?", "How many {p} are in the picture?",
                    "Count the {p}.", "How many {p} can you count?"], p=plural(name))
    things = name if n == 1 else plural(name)
    return q, _pick(rng, ["{W}.", "There {be} {w}.", "I count {w}.", "{W} {t}."],
                    W=cap(word), w=word, be="is" if n == 1 else "are", t=things)


def where(name: str, side: str, rng: random.Random) -> tuple[str, str]:
    """`side` in left, right, top, bottom."""
    pair = "on the left or on the right" if side in ("left", "right") else "at the top or at the bottom"
    at = f"on the {side}" if side in ("left", "right") else f"at the {side}"
    q = _pick(rng, ["Where is the {n}?", "Is the {n} {pair}?", "Where in the picture is the {n}?",
                    "Which side is the {n} on?"], n=name, pair=pair)
    return q, _pick(rng, ["{At}.", "It is {at}.", "The {n} is {at}."], At=cap(at), at=at, n=name)


def what_at(name: str, side: str, rng: random.Random) -> tuple[str, str]:
    at = f"on the {side}" if side in ("left", "right") else f"at the {side}"
    q = _pick(rng, ["What is {at}?", "What do you see {at}?", "What is shown {at}?"], at=at)
    return q, _pick(rng, ["{A}.", "{At} there is {a}.", "{A} is {at}."], A=cap(article(name)), a=article(name),
                    At=cap(at), at=at)


def size_of(name: str, big: bool, rng: random.Random) -> tuple[str, str]:
    q = _pick(rng, ["Is the {n} big or small in this picture?", "How big is the {n} in the picture?",
                    "Does the {n} look big or small here?"], n=name)
    if big:
        return q, _pick(rng, ["Big.", "Big: it fills most of the picture.", "It is big in the picture."])
    return q, _pick(rng, ["Small.", "Small: it takes up only a little of the picture.", "It is small in the picture."])


def describe(name: str, colour: str | None, caption: str | None, rng: random.Random, photo: bool) -> tuple[str, str]:
    q = rng.choice(["Describe this picture.", "Describe the image briefly.", "Tell me about this picture.",
                    "Give a short description of the image.", "What can you tell me about this image?"])
    if photo or not caption:
        first = f"{'A photo' if photo else 'A picture'} of {article(name)}" + (f", mostly {colour}." if colour else ".")
        return q, f"{first} {caption}" if caption else first
    return q, f"{caption} It is mostly {colour}." if colour else caption  # a stamp's caption says what it is


def same_kind(first: str, second: str, rng: random.Random) -> tuple[str, str]:
    q = rng.choice(["Do these two pictures show the same kind of thing?", "Are these the same kind of thing?",
                    "Is the same thing shown in both pictures?", "Do both images show the same thing?"])
    if first == second:
        return q, _pick(rng, ["Yes, both show {a}.", "Yes.", "Yes, they are both {p}."], a=article(first),
                        p=plural(first))
    return q, _pick(rng, ["No, the first shows {a} and the second {b}.", "No.", "No: {a} and {b}."],
                    a=article(first), b=article(second))


def which_picture(name: str, ordinal: str, rng: random.Random) -> tuple[str, str]:
    q = _pick(rng, ["What is in the {o} picture?", "What does the {o} image show?", "Name what the {o} picture shows."],
              o=ordinal)
    return q, _pick(rng, ["{A}.", "The {o} picture shows {a}.", "It shows {a}."], A=cap(article(name)),
                    a=article(name), o=ordinal)


def unsure(reason: str, rng: random.Random) -> tuple[str, str]:
    q = rng.choice(["What is this?", "What is in this picture?", "What do you see?", "What does this picture show?"])
    return q, f"{UNSURE} what it shows: the picture is too {reason}."
