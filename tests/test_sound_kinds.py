"""The sound-kind head's merged synonyms, MLP shape, both saved formats, held-out folds and calibration."""
import json

import pytest
import torch
from safetensors.torch import save_file

from anymal.data.builders.tuxpaint import names_object
from anymal.encoders.sound_kinds import HEAD_DIR, SoundKindHead
from anymal.train.pretrain_sounds import (SYNONYMS, Candidate, Item, _fit, _scores, calibration, held_out_folds,
                                          kind_label)


def test_synonyms_share_one_label_that_still_names_each_of_them():
    words = [w for names in SYNONYMS for w in names]
    assert len(words) == len(set(words)), "a word in two merged kinds"
    for names in SYNONYMS:
        label = kind_label(names[0])
        assert {kind_label(w) for w in names} == {label}
        assert all(names_object(label, w) for w in names), label  # an answer read off it is judged right
    assert kind_label("rooster") == "chicken (rooster, hen)"
    assert kind_label("dog") == "dog" and kind_label("speech") == "speech"
    assert not names_object(kind_label("rooster"), "duck")


def test_mlp_head_saves_and_loads_with_its_hidden_layer(tmp_path):
    head = SoundKindHead(["cow", "dog", "speech"], 6, hidden=4, dropout=0.5)
    head.std.fill_(2.0)
    head.save(tmp_path / "h")
    again = SoundKindHead.load(tmp_path / "h")
    x = torch.randn(5, 6)
    assert again.hidden == 4 and not again.training
    torch.testing.assert_close(again(x), head.eval()(x))  # dropout is off once loaded


def test_the_first_linear_format_still_loads(tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps(["cow", "dog"]))
    state = {"mean": torch.zeros(3), "std": torch.ones(3), "linear.weight": torch.eye(2, 3), "linear.bias": torch.zeros(2)}
    save_file(state, str(tmp_path / "head.safetensors"))
    head = SoundKindHead.load(tmp_path)
    assert head.hidden == 0 and head.labels == ["cow", "dog"]
    torch.testing.assert_close(head(torch.tensor([[1.0, 0.0, 5.0]])), torch.tensor([[1.0, 0.0]]))


@pytest.mark.skipif(not (HEAD_DIR / "head.safetensors").is_file(), reason="no shipped sound-kind head")
def test_the_shipped_head_loads():
    head = SoundKindHead.load(HEAD_DIR)
    assert "speech" in head.labels and head(torch.zeros(2, head.mean.shape[0])).shape == (2, len(head.labels))


def _item(rec: str, obj: str, original: bool = True) -> Item:
    return Item(f"{rec}.flac", obj, "train", rec, original)


def test_held_out_folds_keep_every_kind_known_and_merge_synonyms():
    train = [_item("d1", "dog"), _item("d2", "dog"), _item("d3", "dog"), _item("d1", "dog", original=False),
             _item("c1", "cow"), _item("r1", "rooster"), _item("h1", "hen"), Item("s.flac", "speech", "speech", None, True)]
    folds = held_out_folds(train)
    assert len(folds) == 3 and all(len(f) for f in folds)
    for held in folds:
        assert "c1" not in held  # a kind recorded once is never held out
        assert len({"r1", "h1"} & held) <= 1  # rooster and hen are one kind: one of them stays
        assert len({"d1", "d2", "d3"} & held) == 1
    assert {r for f in folds for r in f} >= {"d1", "d2", "d3"}


def test_fit_scores_by_names_and_calibration_splits_by_confidence():
    torch.manual_seed(0)
    centres = {"dog": torch.tensor([4.0, 0, 0, 0]), "chicken (rooster, hen)": torch.tensor([0, 4.0, 0, 0]),
               "speech": torch.tensor([0, 0, 4.0, 0])}
    objects = ["dog", "rooster", "hen", "speech"]
    train = [_item(f"{o}{k}", o) for o in objects for k in range(8)]
    x = torch.stack([centres[i.label] + 0.3 * torch.randn(4) for i in train])
    labels = sorted(centres)
    for cand in (Candidate(1e-3), Candidate(1e-3, 8, 0.1)):
        head = _fit(x, train, labels, cand, steps=400)
        test = [Item("a", "hen", "known kind", "a", True), Item("b", "dogs", "known kind", "b", True),
                Item("c", "zebra", "new kind", "c", True)]
        scores = _scores(head, torch.stack([centres["chicken (rooster, hen)"], centres["dog"], torch.zeros(4)]), test)
        assert scores["known kind"]["top1"] == 1.0 and scores["new kind"]["top1"] == 0.0  # "dogs" named by "dog"
        cal = calibration(head, x, train, cuts=(0.5,))
        assert cal["above 0.5"]["n"] + cal["below 0.5"]["n"] == len(train) and cal["above 0.5"]["top1"] == 1.0
