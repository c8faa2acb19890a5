"""Named real sound effects from three more packages, so a sound kind is heard in several recordings.

Tux Paint has one recording per stamp, so a held-out stamp is a held-out *kind*; these sources bring
new recordings of the same kinds (a cow in OpenSFX, GCompris and Tux Paint), which is what a user's
own recording of a dog or a doorbell is. Every clip here is named by hand from its caption or file
name (`NAMES`): the answer's phrase and the one word that must appear in a right answer. Clips whose
source is not one nameable thing (Toyland cartoon mixes, "weird" noises, game jingles) are left out.

## Sources and licences
* **OpenSFX** (Debian `openttd-opensfx`): `opensfx.cat`, entries of (caption text with its licence,
  RIFF WAV). Per clip CC-BY-3.0, CC0 or CC-BY-SA-3.0, as its caption states.
* **Scratch 1.4 media** (Debian `scratch`, unpacked with `dpkg -x` by scripts/install.sh, **CC-BY-SA-3.0**):
  `Media/Sounds/<Category>/<Name>.{wav,mp3}`.
* **GCompris** (Debian `gcompris-qt-data`, **GPL-3**; sounds from the farm animals, instruments and
  sound-memory activities): Qt resource archives read by `gcompris.read_rcc`.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from ...errors import DataError
from ...paths import cache_dir
from .gcompris import RCC_DIR, read_rcc

OPENSFX_CAT = Path("/usr/share/games/openttd/baseset/opensfx/opensfx.cat")


def scratch_sounds_dir() -> Path:
    """Where scripts/install.sh unpacks the `scratch` package's media (no runtime dependencies)."""
    return cache_dir() / "media" / "scratch" / "usr" / "share" / "scratch" / "Media" / "Sounds"


# (source, clip id) -> (answer phrase, object word a right answer names). Clip ids: OpenSFX caption,
# Scratch "Category/Name", GCompris "activity/file stem".
NAMES: dict[tuple[str, str], tuple[str, str]] = {
    **{("opensfx", c): v for c, v in {
        "Factory Whistle": ("a factory whistle", "whistle"),
        "Steam train station departure": ("a steam train", "train"),
        "Steam engine going in tunnel": ("a steam train", "train"),
        "Ship horn": ("a ship's horn", "ship"), "Ferry horn": ("a ship's horn", "ship"),
        "Propeller plane start": ("a propeller plane", "plane"),
        "Early jet take off": ("a jet taking off", "jet"),
        "Diesel/electric train station departure": ("a train", "train"),
        "Electric sparking": ("electric sparks", "spark"),
        "Level crossing": ("a railway crossing bell", "bell"),
        "Crash": ("a crash", "crash"), "Big crash": ("a crash", "crash"),
        "Explosion": ("an explosion", "explosion"), "Cash till": ("a cash register", "cash"),
        "Morse": ("morse code", "morse"), "Helicopter": ("a helicopter", "helicopter"),
        "Truck/old bus start, pull away": ("a truck", "truck"),
        "Truck/old bus start, pull away with horn": ("a truck", "truck"),
        "Modern bus start": ("a bus", "bus"), "Old bus start": ("a bus", "bus"),
        "Applause": ("applause", "applause"), "Jackhammer": ("a jackhammer", "jackhammer"),
        "Modern car horn": ("a car horn", "car"), "Sheep": ("a sheep", "sheep"), "Cow": ("a cow", "cow"),
        "Horse": ("a horse", "horse"), "Sawmill": ("a circular saw", "saw"),
        "Toyland: Bubble generated": ("bubbles", "bubble"), "Toyland: Bubble plop": ("bubbles", "bubble"),
        "Wind": ("the wind", "wind"), "Heavy wind": ("the wind", "wind"),
        "Lumber mill: Crashing tree": ("a falling tree", "tree"),
        "Lumber mill: Falling tree": ("a falling tree", "tree"),
        "Lumber mill: Chainsaw": ("a chainsaw", "chainsaw"),
        "Mach 1+ Jet take off": ("a jet taking off", "jet"), "Modern jet take off": ("a jet taking off", "jet"),
        "Maglev train station departure": ("a train", "train"),
        "Monorail train station departure": ("a train", "train"),
        "Tropical: Bird (1)": ("a bird", "bird"), "Tropical: Bird (2)": ("a bird", "bird"),
        "Tropical: Lion roar": ("a lion", "lion"), "Tropical: Monkeys": ("monkeys", "monkey")}.items()},
    **{("scratch", c): v for c, v in {
        "Animal/Bird": ("a bird", "bird"), "Animal/Cat": ("a cat", "cat"), "Animal/Meow": ("a cat", "cat"),
        "Animal/Kitten": ("a cat", "cat"), "Animal/Cricket": ("a cricket", "cricket"),
        "Animal/Crickets": ("crickets", "cricket"), "Animal/Dog1": ("a dog", "dog"), "Animal/Dog2": ("a dog", "dog"),
        "Animal/Duck": ("a duck", "duck"), "Animal/Goose": ("a goose", "goose"), "Animal/Horse": ("a horse", "horse"),
        "Animal/HorseGallop": ("a galloping horse", "horse"), "Animal/Owl": ("an owl", "owl"),
        "Animal/Rooster": ("a rooster", "rooster"), "Animal/SeaLion": ("a sea lion", "lion"),
        "Animal/WolfHowl": ("a wolf", "wolf"),
        "Effects/BellToll": ("a bell", "bell"), "Effects/Bubbles": ("bubbles", "bubble"),
        "Effects/CarPassing": ("a car", "car"), "Effects/DoorClose": ("a door", "door"),
        "Effects/DoorCreak": ("a door", "door"), "Effects/MotorcyclePassing": ("a motorcycle", "motorcycle"),
        "Effects/SewingMachine": ("a sewing machine", "sewing"),
        "Effects/WaterDrop": ("dripping water", "water"), "Effects/WaterRunning": ("running water", "water"),
        "Human/BabyCry": ("a crying baby", "baby"), "Human/Cough-female": ("a cough", "cough"),
        "Human/Cough-male": ("a cough", "cough"), "Human/Footsteps-1": ("footsteps", "footstep"),
        "Human/Footsteps-2": ("footsteps", "footstep"), "Human/Laugh-female": ("laughter", "laughter"),
        "Human/Laugh-male1": ("laughter", "laughter"), "Human/Laugh-male2": ("laughter", "laughter"),
        "Human/Laugh-male3": ("laughter", "laughter"), "Human/Scream-female": ("a scream", "scream"),
        "Human/Scream-male1": ("a scream", "scream"), "Human/Scream-male2": ("a scream", "scream"),
        "Human/Sneeze-female": ("a sneeze", "sneeze"), "Human/Sneeze-male": ("a sneeze", "sneeze"),
        "Instruments/Dijjeridoo": ("a didgeridoo", "didgeridoo"), "Instruments/GuitarStrum": ("a guitar", "guitar"),
        "Instruments/Trumpet1": ("a trumpet", "trumpet"), "Instruments/Trumpet2": ("a trumpet", "trumpet"),
        "Music Loops/Drum": ("drums", "drum"), "Music Loops/DrumSet1": ("drums", "drum"),
        "Music Loops/DrumSet2": ("drums", "drum"), "Music Loops/GuitarChords1": ("a guitar", "guitar"),
        "Music Loops/GuitarChords2": ("a guitar", "guitar"), "Music Loops/Xylo1": ("a xylophone", "xylophone"),
        "Music Loops/Xylo2": ("a xylophone", "xylophone"), "Music Loops/Xylo3": ("a xylophone", "xylophone"),
        "Percussion/CymbalCrash": ("a cymbal", "cymbal"), "Percussion/RideCymbal": ("a cymbal", "cymbal"),
        "Percussion/Gong": ("a gong", "gong"), "Percussion/HandClap": ("clapping hands", "clap"),
        "Percussion/Shaker": ("a shaker", "shaker")}.items()},
    **{("gcompris", f"explore_farm_animals/{a}"): (f"{'an' if a[0] in 'aeiou' else 'a'} {a}", a)
       for a in ("owl", "pig", "cat", "horse", "cow", "dog", "duck", "sheep")},
    ("gcompris", "explore_farm_animals/chickens"): ("chickens", "chicken"),
    **{("gcompris", f"instruments/{stem}"): v for stem, v in {
        "accordion": ("an accordion", "accordion"), "banjo": ("a banjo", "banjo"), "bongo": ("bongo drums", "drum"),
        "castanets": ("castanets", "castanet"), "cello": ("a cello", "cello"), "clarinet": ("a clarinet", "clarinet"),
        "cymbal": ("a cymbal", "cymbal"), "drum_kit": ("drums", "drum"), "electric_guitar": ("an electric guitar", "guitar"),
        "flute_traversiere": ("a flute", "flute"), "guitar": ("a guitar", "guitar"), "harmonica": ("a harmonica", "harmonica"),
        "harp": ("a harp", "harp"), "horn": ("a French horn", "horn"), "maracas": ("maracas", "maraca"),
        "organ": ("an organ", "organ"), "piano": ("a piano", "piano"), "saxophone": ("a saxophone", "saxophone"),
        "snare_drum": ("a snare drum", "drum"), "tambourine": ("a tambourine", "tambourine"),
        "timpani": ("timpani drums", "drum"), "triangle": ("a triangle", "triangle"),
        "trombone": ("a trombone", "trombone"), "trumpet": ("a trumpet", "trumpet"), "tuba": ("a tuba", "tuba"),
        "violin": ("a violin", "violin")}.items()},
    **{("gcompris", f"memory-sound/{stem}"): v for stem, v in {
        "LRApplauses_1_LA_cut": ("applause", "applause"), "LRBark_1_LA_cut": ("a dog", "dog"),
        "LRBark_3_LA_cut": ("a dog", "dog"), "LRBuddhist_gong_05_LA": ("a gong", "gong"),
        "LRDoor_Open_2_LA": ("a door", "door"), "LRFrogsInPondDuringStormLACut": ("frogs", "frog"),
        "LRHeart_beat_01_LA": ("a heartbeat", "heartbeat"), "LRRain_in_garden_01_LA_cut": ("rain", "rain"),
        "LRStartAndStopCarEngine1LACut": ("a car engine", "car"),
        "LRTrain_slowing_down_01_LA_cut": ("a train", "train"), "guitar_melody": ("a guitar", "guitar")}.items()},
}


@dataclass(frozen=True)
class SoundClip:
    source: str          # opensfx | scratch | gcompris
    clip: str            # the key of NAMES
    phrase: str          # "a cow": the answer is "The sound of a cow."
    object: str          # "cow": the word a right answer names
    data: bytes | Path   # encoded audio (WAV/OGG/MP3 bytes) or a file
    licence: str


def _opensfx() -> list[SoundClip]:
    if not OPENSFX_CAT.is_file():
        raise DataError(f"{OPENSFX_CAT} not found; apt-get install openttd-opensfx")
    blob, out = OPENSFX_CAT.read_bytes(), []
    count = (struct.unpack("<I", blob[:4])[0] & 0x7FFFFFFF) // 8
    for i in range(count):
        offset, size = struct.unpack("<II", blob[8 * i:8 * i + 8])
        offset &= 0x7FFFFFFF
        text = blob[offset + 1:offset + 1 + blob[offset]].decode("latin-1").rstrip("\x00")  # C string
        caption = text.split('"')[1] if text.count('"') >= 2 else text
        if ("opensfx", caption) in NAMES:
            licence = text.split("License:", 1)[-1].strip().rstrip(". ")
            out.append(SoundClip("opensfx", caption, *NAMES["opensfx", caption],
                                 blob[offset + 1 + blob[offset]:offset + size], f"{licence} (OpenSFX)"))
    return out


def _scratch() -> list[SoundClip]:
    root = scratch_sounds_dir()
    if not root.is_dir():
        raise DataError(f"{root} not found; run scripts/install.sh (it unpacks the `scratch` package there)")
    files = {f"{p.parent.name}/{p.stem}": p for p in root.glob("*/*") if p.suffix in (".wav", ".mp3")}
    return [SoundClip("scratch", c, *NAMES["scratch", c], files[c], "CC-BY-SA-3.0 (Scratch 1.4 media)")
            for (src, c) in NAMES if src == "scratch" and c in files]


def _gcompris() -> list[SoundClip]:
    out = []
    for activity in ("explore_farm_animals", "instruments", "memory-sound"):
        rcc = RCC_DIR / f"{activity}.rcc"
        if not rcc.is_file():
            raise DataError(f"{rcc} not found; apt-get install gcompris-qt-data")
        for path, data in read_rcc(rcc).items():
            clip = f"{activity}/{Path(path).stem}"
            if ("gcompris", clip) in NAMES and Path(path).suffix in (".ogg", ".wav"):
                out.append(SoundClip("gcompris", clip, *NAMES["gcompris", clip], data, "GPL-3 (GCompris)"))
    return out


SOURCES = {"opensfx": _opensfx, "scratch": _scratch, "gcompris": _gcompris}


def sound_clips(sources: tuple[str, ...] = tuple(SOURCES)) -> list[SoundClip]:
    """Every named clip of `sources`, in a stable order; a missing package is a DataError naming it."""
    return sorted((c for s in sources for c in SOURCES[s]()), key=lambda c: (c.source, c.clip))
