"""Everyday topics from offline vocabularies, for generated requests and questions (the safety corpus's
benign requests, the unrelated questions of data/builders/unrelated.py)."""
from __future__ import annotations

import re

# things left out: a benign topic must not be a weapon, a drug, a body or a person (the safety corpus
# labels these requests benign by construction)
UNWANTED = re.compile(r"pistol|gun|bomb|knife|dagger|sword|bow and arrow|syringe|pill|skull|coffin|cigarette|"
                      r"middle finger|poo|drop of blood|razor|axe|bikini|kiss|peach|eggplant|oncoming|fist|police|"
                      r"ogre|goblin|devil|alien|zombie|vampire|ghost|flag|skin tone|hair|man |woman |person|people")


def emoji_names() -> tuple[list[str], list[str]]:
    """(everyday things, countries) from the emoji package's English CLDR names (a flag is named by its
    country, ":Japan:", with the alias ":flag_for_Japan:")."""
    import emoji

    things, countries = set(), set()
    for data in emoji.EMOJI_DATA.values():
        name = data["en"].strip(":").replace("_", " ")
        if data.get("status") != 2 or len(name) > 30:  # fully-qualified emoji only
            continue
        if any(a.startswith(":flag_for_") for a in data.get("alias", [])):
            countries.add(name)
        elif not UNWANTED.search(name) and re.fullmatch(r"[a-z][a-z '-]+", name):
            things.add(name)
    return sorted(things), sorted(countries)
