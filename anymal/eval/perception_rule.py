"""What the frozen perception parts alone say about a picture: the fixed rule and the oracle that every
naming score is reported next to (issue 31: an adapter should be at least as good as any fixed rule over
its own inputs)."""
from __future__ import annotations

from collections import Counter

from ..data.builders.tuxpaint import names_object
from ..kinship import phrases, relate, words
from ..modalities import IMAGE

DETECTOR, CLASSIFIER, COLOURS = "ssd-mobilenet-coco", "efficientnet-lite3-labels", "pixel-colours"


class Perceived:
    """Each picture's perception rows, read once: `top` is the fixed naming rule (the detector's label
    when its score is at least `sure`, else the classifier's top label), `all` every name perception
    gives (detector kinds, classifier top 3: the oracle's) and `kin` their WordNet kinds (anymal/kinship.py),
    `det` the detector's (name, score, row)s, `detector`/`classifier` their own top labels, `colour` the
    colour part's top colour."""

    sure = 0.5

    def __init__(self):
        from ..encoders import load_encoder

        self.parts = {n: load_encoder(n, IMAGE.name) for n in (DETECTOR, CLASSIFIER, COLOURS)}
        self.cache: dict[str, dict] = {}

    def look(self, path: str, item=None) -> dict:
        """`item`: the picture itself where `path` only names it (a video's frame: "clip.mp4#2")."""
        if path not in self.cache:
            rows = {n: e.encode([path if item is None else item])[0] for n, e in self.parts.items()}  # [entries, 8]
            named = {n: [(self.parts[n].labels[int(r[0]) - 1], float(r[1]), r) for r in rows[n] if r[0] > 0]
                     for n in rows}
            kin = [self.parts[n].kin[int(r[0]) - 1] for n in (DETECTOR, CLASSIFIER) for r in rows[n] if r[0] > 0]
            det, cls = named[DETECTOR], named[CLASSIFIER]
            top = det[0][0] if det and det[0][1] >= self.sure else (cls[0][0] if cls else "")
            self.cache[path] = {"top": top, "all": [n for n, _, _ in det + cls], "kin": kin, "det": det,
                                "detector": det[0][0] if det else "", "classifier": cls[0][0] if cls else "",
                                "colour": named[COLOURS][0][0] if named[COLOURS] else ""}
        return self.cache[path]

    def shows(self, path: str, asked: str) -> bool:
        """The yes/no rule: some name perception gives is the asked kind, or a kind of it, or one it is
        a kind of ("dog" asked, "beagle" or "animal" seen; "pigeon" asked, "bird" seen)."""
        return self.seen_shows(self.look(path), asked)

    @staticmethod
    def seen_shows(seen: dict, asked: str) -> bool:
        said = phrases(asked)
        return any(names_object(n, words(asked)[-1]) for n in seen["all"] if words(asked)) or \
            any(any(relate(k, said)) for k in seen["kin"])


class ClipPerceived(Perceived):
    """The same rule over a clip's frames, and the `frame-motion` part's direction: `top` is the commonest
    naming-rule name over the frames, `all` and `kin` every frame's, `direction` the commonest of the
    frames' motion words ("" where it says none)."""

    def __init__(self, frames: int = 4):
        from ..encoders import load_encoder

        super().__init__()
        self.frames, self.motion = frames, load_encoder("frame-motion", IMAGE.name)

    def clip(self, path: str) -> dict:
        import torch

        from ..encoders.video import load_video

        if path not in self.cache:
            frames = load_video(path, self.frames)
            looks = [self.look(f"{path}#{i}", f) for i, f in enumerate(frames)]
            rows = self.motion(torch.stack([self.motion.preprocess(f) for f in frames]), self.frames)[:, 0]
            moves = Counter(self.motion.labels[int(k) - 1] for k in rows[:, 0] if k > 0)
            tops = Counter(s["top"] for s in looks if s["top"])
            self.cache[path] = {"top": tops.most_common(1)[0][0] if tops else "",
                                "all": [n for s in looks for n in s["all"]], "kin": [k for s in looks for k in s["kin"]],
                                "direction": moves.most_common(1)[0][0] if moves else ""}
        return self.cache[path]
