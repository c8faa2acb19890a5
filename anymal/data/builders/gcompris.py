"""Real photos from the Debian package `gcompris-qt-data` (GCompris 3.1; code GPL-3, photos from Wikimedia
Commons: Public Domain / CC0 / CC-BY(-SA), credited file by file in the READMEs beside them).

GCompris ships its activities as Qt binary resources (`.rcc`, zlib-compressed entries). Two kinds of photo
are read: the `explore_*` boards give a title and a description per photo; `erase` and `categorization`
name each photo by its file name (`hammer3.webp`, `red_panda.webp`), mapped to words here.
"""
from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import DataError
from .tuxpaint import object_word

RCC_DIR = Path("/usr/share/gcompris-qt/rcc")
UNCREDITED = "not listed in the GCompris README beside it (GCompris data: GPL-3)"
ACTIVITIES = "gcompris/src/activities"

# file-name stem -> (what a person calls it, words an answer may use to name it); the rest: stem as words
NAMED = {
    "flying_fox": ("flying fox (a fruit bat)", ["bat", "fox"]), "chamaeleon": ("chameleon", ["chameleon"]),
    "calf": ("calf", ["calf", "cow"]), "gosling": ("gosling", ["gosling", "goose"]),
    "kitten": ("kitten", ["kitten", "cat"]), "nubian_ibex": ("Nubian ibex", ["ibex", "goat"]),
    "long_nosed_monkey": ("long-nosed monkey", ["monkey"]), "northern_harrier": ("northern harrier", ["harrier", "hawk", "bird"]),
    "spoonbills": ("spoonbill", ["spoonbill", "bird"]), "macaque": ("macaque", ["macaque", "monkey"]),
    "gibbon": ("gibbon", ["gibbon", "ape", "monkey"]), "meerkats": ("meerkat", ["meerkat"]),
    "screwDriver": ("screwdriver", ["screwdriver"]), "plier": ("pliers", ["pliers", "plier"]),
    "tweezer": ("tweezers", ["tweezers", "tweezer"]), "sideCutter": ("side cutter", ["cutter", "pliers"]),
    "nailCutter": ("nail clipper", ["clipper", "cutter"]), "measuringTape": ("measuring tape", ["tape"]),
    "multimeter": ("multimeter", ["multimeter", "meter"]), "spray": ("spray can", ["spray", "can"]),
    "cuttingTool": ("cutting tool", ["cutter", "knife", "tool"]), "bulb": ("light bulb", ["bulb"]),
    "erasers": ("erasers", ["eraser"]), "blackslate": ("slate board", ["slate", "blackboard", "board"]),
    "spoons": ("spoons", ["spoon"]), "weighingMachine": ("weighing scale", ["scale"]),
    "buffetset": ("buffet set", ["dish", "bowl", "pot"]), "fish": ("fish", ["fish"]),
    "solar": ("solar panels", ["solar", "panel"]), "windmill": ("wind turbine", ["turbine", "windmill"]),
    "dam": ("dam", ["dam"]), "geothermal": ("geothermal power plant", ["geothermal", "plant"]),
}
# categorization folders named by file (monuments are read from explore_monuments, with titles)
FILE_NAMED = {"erase": ["erase/resource"],
              "categorization": [f"categorization/resource/images/{c}" for c in ("tools", "others", "fishes", "renewable")]}
EXPLORE = ("explore_farm_animals", "explore_world_animals", "explore_monuments")
CATEGORY = {"explore_farm_animals": "animal", "explore_world_animals": "animal", "explore_monuments": "monument",
            "erase": "animal", "tools": "tool", "others": "household", "fishes": "animal", "renewable": "energy"}


@dataclass
class Photo:
    key: str  # path inside the archive
    data: bytes  # the photo's file (WebP)
    name: str  # what it shows, as a person says it
    names: list[str]  # words that name it in an answer (singular, lower case)
    category: str
    licence: str
    title: str = ""
    text: str = ""  # the board's description, where there is one
    extra: dict = field(default_factory=dict)


def read_rcc(path: Path) -> dict[str, bytes]:
    """A Qt binary resource file (format v1-v3) -> {path: bytes}."""
    b = path.read_bytes()
    if b[:4] != b"qres":
        raise DataError(f"{path}: not a Qt resource file (no 'qres' magic)")
    version, tree, data, names = struct.unpack(">IIII", b[4:20])
    entry = 14 if version < 2 else 22

    def name(off: int) -> str:
        n, = struct.unpack(">H", b[names + off:names + off + 2])
        return b[names + off + 6:names + off + 6 + 2 * n].decode("utf-16-be")

    out: dict[str, bytes] = {}

    def walk(i: int, prefix: str) -> None:
        e = tree + i * entry
        noff, flags = struct.unpack(">IH", b[e:e + 6])
        nm = name(noff) if i else ""
        if flags & 2:  # a directory: count, first child
            count, first = struct.unpack(">II", b[e + 6:e + 14])
            for c in range(first, first + count):
                walk(c, prefix + nm + "/" if nm else prefix)
            return
        doff, = struct.unpack(">I", b[e + 10:e + 14])
        p = data + doff
        size, = struct.unpack(">I", b[p:p + 4])
        blob = b[p + 4:p + 4 + size]
        out[prefix + nm] = zlib.decompress(blob[4:]) if flags & 1 else blob  # qCompress: length + zlib

    walk(0, "")
    return out


def licences(files: dict[str, bytes]) -> dict[str, str]:
    """file path -> 'License (Copyright, Source)' from the READMEs beside the files."""
    out = {}
    for key, blob in files.items():
        if not key.endswith("/README"):
            continue
        folder = key.rsplit("/", 1)[0]
        for block in re.split(r"\n\s*\n", blob.decode("utf-8", "replace")):
            fields = dict(re.findall(r"^(\w+):\s*(.*)$", block, re.M))
            listed = re.findall(r"[\w./-]+\.(?:webp|svg|png|jpg|ogg|wav)", block.split("Files:")[-1])
            credit = f"{fields.get('License', 'see README')} ({fields.get('Copyright', '?')}, {fields.get('Source', 'GCompris')})"
            for f in listed:
                out[f"{folder}/{f}"] = credit
    return out


def _spoken(stem: str) -> tuple[str, list[str]]:
    base = re.sub(r"\d+$", "", stem)
    if base in NAMED:
        return NAMED[base]
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", base).replace("_", " ").lower()
    return words, [object_word(words + ".")]


def _explore(activity: str, files: dict[str, bytes], credit: dict[str, str]) -> list[Photo]:
    photos = []
    for key, blob in sorted(files.items()):
        if "/board/" not in key or not key.endswith(".qml"):
            continue
        qml = blob.decode("utf-8", "replace")
        for item in re.findall(r"\{[^{}]*\"image2\"[^{}]*\}", qml):
            img = re.search(r'"image2":\s*"qrc:/(.*?)"', item).group(1)
            title = re.search(r'"title":\s*qsTr\("(.*?)"\)', item).group(1)
            text = re.search(r'"text":\s*qsTr\("(.*?)"\)', item)
            if img not in files:
                continue
            cat = CATEGORY[activity]
            words = [object_word(title + ".")] if cat == "animal" else re.findall(r"[^\W\d_]{4,}", title.lower())
            name = title.lower() if cat == "animal" else title  # "Horse" is an animal, not a proper name
            photos.append(Photo(img, files[img], name, words, cat, credit.get(img, UNCREDITED),
                                title=title, text=text.group(1) if text else ""))
    return photos


def find_photos(root: Path = RCC_DIR) -> list[Photo]:
    """Every titled or file-named photo in the installed GCompris archives."""
    if not root.is_dir():
        raise DataError(f"{root}: GCompris data not found; install it with `apt-get install gcompris-qt-data`")
    photos: list[Photo] = []
    for activity in EXPLORE:
        files = read_rcc(root / f"{activity}.rcc")
        photos += _explore(activity, files, licences(files))
    for activity, folders in FILE_NAMED.items():
        files = read_rcc(root / f"{activity}.rcc")
        credit = licences(files)
        for folder in folders:
            prefix = f"{ACTIVITIES}/{folder}/"
            for key in sorted(k for k in files if k.startswith(prefix) and k.endswith(".webp") and "/" not in k[len(prefix):]):
                name, words = _spoken(Path(key).stem)
                cat = CATEGORY.get(folder.rsplit("/", 1)[-1], CATEGORY.get(activity, "photo"))
                photos.append(Photo(key, files[key], name, words, cat, credit.get(key, UNCREDITED)))
    return photos
