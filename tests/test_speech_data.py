"""Audio set builder (Asterisk speech, TTS, Tux Paint sounds) and speech metrics / Whisper baseline."""
import json
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
import soundfile as sf

from anymal.data.builders import speech
from anymal.data.jsonl import read_jsonl
from anymal.data.builders.audio_set import build_audio
from anymal.data.builders.speech import ASTERISK_DIR, ASTERISK_TRANSCRIPTS, clean_transcript, read_transcripts, sound_answer
from anymal.data.builders.human_speech import KLETTRES, KTUBERLING, human_words
from anymal.data.builders.spoken_words import GROUP as SINGLE_WORD, spoken_words
from anymal.data.builders.tuxpaint import STAMPS_DIR
from anymal.encoders.media import load_audio
from anymal.errors import InputError
from anymal.eval.speech import normalize_text, sound_naming_accuracy, wer_cer

HAVE_ASTERISK = ASTERISK_DIR.is_dir() and ASTERISK_TRANSCRIPTS.is_file()
HAVE_ALL = (HAVE_ASTERISK and STAMPS_DIR.is_dir() and KTUBERLING.is_dir() and KLETTRES.is_dir()
            and all(map(shutil.which, ("espeak-ng", "flite", "text2wave"))))
needs_asterisk = pytest.mark.skipif(not HAVE_ASTERISK, reason="apt asterisk-core-sounds-en(-wav) not installed")
needs_all = pytest.mark.skipif(not HAVE_ALL, reason="needs apt asterisk-core-sounds-en(-wav), "
                                                    "tuxpaint-stamps-default, ktuberling-data, klettres-data, "
                                                    "espeak-ng, flite and festival "
                                                    "(scripts/install.sh installs them)")


def test_wer_cer_hand_checked():
    r = wer_cer(["the cat sat down"], ["the cat sat up"])
    assert r["wer"] == pytest.approx(1 / 4) and r["substitutions"] == 1
    assert r["cer"] == pytest.approx(4 / 14)  # "up" -> "down": 4 character edits in 14 characters
    assert wer_cer(["Hello, World!"], ["hello world"])["wer"] == 0.0  # case and punctuation ignored
    # corpus-level, not a mean of per-clip rates: 1 deletion over 1 + 4 reference words
    assert wer_cer(["yes", "one two three"], ["yes", "one two three four"])["wer"] == pytest.approx(1 / 5)
    assert normalize_text("Waldo’s  premier—provider, Press 1.") == "waldo's premier provider press 1"
    with pytest.raises(InputError, match="empty after normalisation"):
        wer_cer(["x"], ["?!"])


def test_sound_answer_rule_and_accuracy():
    assert sound_answer("A duck.") == "The sound of a duck."
    assert sound_answer("A Tamworth pig.") == "The sound of a Tamworth pig."
    assert sound_answer("“No U-Turn”.") is None and sound_answer("Hard candy—yum!") is None
    assert sound_answer("Nun stands for nisht or nothing. If the dreidel lands on nun, you do nothing.") is None
    assert sound_naming_accuracy(["The sound of two ducks.", "A cat."], ["duck", "dog"]) == 0.5


def test_clean_transcript():
    assert clean_transcript("dash [-]") == "dash"
    assert clean_transcript("Please  enter your   password.") == "Please enter your password."
    for non_speech in ("[ascending tones]", "(1 second of silence)", "<beep ascending>"):
        assert clean_transcript(non_speech) is None


@needs_asterisk
def test_asterisk_transcripts():
    t = read_transcripts()
    assert t["digits/mon-10"] == "November" and len(t) >= 560
    assert clean_transcript(t["letters/at"]) == "at"


SMALL = dict(limit={"asterisk": 10, "tts": 4, "tuxpaint": 8, "words": 6}, val=0.3, test=0.3, tts_per_sentence=2,
             sound_copies=3, mixes={"train": 2, "val": 0, "test": 2}, progress=False)


@needs_all
def test_small_build_is_split_by_transcript_and_recording_and_loadable(tmp_path):
    stats = build_audio(tmp_path, **SMALL)
    totals = defaultdict(int)
    sentence_splits, recording_splits, words = defaultdict(set), defaultdict(set), []
    for split in ("train", "val", "test", "test-mixed"):
        samples, skipped = read_jsonl(tmp_path / f"{split}.jsonl", ["audio"])
        assert skipped.total == 0 and len(samples) == stats["counts"][split]["total"]
        for s in samples:
            totals[s.meta["kind"] + "/" + s.meta["source"]] += 1
            user, answer = s.messages
            assert user["content"][0]["type"] == "audio" and user["content"][1]["type"] == "text"
            wave = load_audio(user["content"][0]["path"])
            assert wave.ndim == 1 and len(wave) / 16000 == pytest.approx(s.meta["seconds"], abs=0.02)
            if s.meta["kind"] == "sound" and s.meta["source"] != "mix":  # val/test say how they are reported
                assert (split == "train") == ("group" not in s.meta)
            if s.meta["kind"] == "sound":
                assert answer["content"][0]["text"].startswith("The sound of ") and s.meta["object"]
            else:
                assert answer["content"][0]["text"] == s.meta["transcript"]
                sentence_splits[normalize_text(s.meta["transcript"])].add(split.replace("test-mixed", "test"))
                words += [s] if s.meta.get("group") == SINGLE_WORD else []
            if s.meta["source"] != "mix" and s.meta["kind"] == "sound":
                recording_splits[s.meta["recording"]].add(split)
                assert s.meta.get("augmented", 0) == 0 or split == "train"
    assert all(len(v) == 1 for v in sentence_splits.values()), "a sentence is in two splits"
    assert all(len(v) == 1 for v in recording_splits.values()), "a sound recording is in two splits"
    assert totals["speech/asterisk"] == 10 and totals["speech/festival"] >= 1  # the held-out voice reads test sentences
    # single words: two voices each, none of them a word of the real-voice test set, split by the word (above)
    assert len(words) == 12 and len({s.meta["transcript"] for s in words}) == 6
    assert all(" " not in s.meta["transcript"] and s.meta["seconds"] < 3 for s in words)
    assert not {s.meta["transcript"] for s in words} & {w for w, *_ in human_words()}
    trained = sum(r == {"train"} for r in recording_splits.values())
    sounds = sum(v for k, v in totals.items() if k.startswith("sound/") and k != "sound/mix")
    assert len(recording_splits) == 8 and sounds == 8 + 2 * trained  # 3 copies of each training recording
    # each mix is asked both ways; test mixes (only over known-kind sounds) go to test-mixed.jsonl
    assert stats["counts"]["train"]["speech/mix"] == stats["counts"]["train"]["sound/mix"] == 2
    assert totals["speech/mix"] == totals["sound/mix"] == 2 + stats["counts"]["test-mixed"]["total"] // 2
    assert json.loads((tmp_path / "stats.json").read_text())["counts"] == stats["counts"]
    assert "CC-BY-SA-3.0" in (tmp_path / "README.md").read_text()
    # deterministic: a second build writes identical manifests
    build_audio(tmp_path / "again", **SMALL)
    for split in ("train", "val", "test", "test-mixed"):
        assert (tmp_path / f"{split}.jsonl").read_bytes() == (tmp_path / "again" / f"{split}.jsonl").read_bytes()


@needs_all
def test_single_words_leave_out_the_real_voice_test_words():
    words = spoken_words()
    assert {"apple", "bear"} <= set(words) and len(words) > 300  # Tux Paint's object words...
    assert not {"camel", "dog", "pyramid"} & set(words)  # ...but none KTuberling or KLettres says


@needs_all
def test_tts_failures_are_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(speech, "VOICES", [("espeak-ng", "xx-no-such-voice"), ("flite", "no-such-voice")])
    monkeypatch.setattr(speech, "HELD_OUT_VOICES", [])
    stats = build_audio(tmp_path, sources=("tts",), limit=3, tts_per_sentence=2, progress=False)
    assert stats["skipped"] == {"TTS failed (espeak-ng)": 3, "TTS failed (flite)": 3}
    assert sum(c["total"] for c in stats["counts"].values()) == 0


def test_unknown_source_is_an_error_naming_it(tmp_path):
    from anymal.errors import DataError

    with pytest.raises(DataError, match="bogus"):
        build_audio(tmp_path, sources="asterisk,bogus", progress=False)
    with pytest.raises(DataError, match="bogus"):
        build_audio(tmp_path, limit={"bogus": 1}, progress=False)


@pytest.mark.integration
@needs_asterisk
def test_whisper_baseline_on_a_real_asterisk_clip(tmp_path):
    pytest.importorskip("ctranslate2")
    from anymal.eval.speech import whisper_baseline

    rec = {"messages": [{"role": "user", "content": "<audio>Transcribe this audio."},
                        {"role": "assistant", "content": "Please enter your password followed by the pound key."}],
           "audios": [str(ASTERISK_DIR / "agent-pass.wav")],
           "meta": {"kind": "speech", "transcript": "Please enter your password followed by the pound key."}}
    (tmp_path / "m.jsonl").write_text(json.dumps(rec) + "\n")
    (pred,) = whisper_baseline(tmp_path / "m.jsonl")
    assert wer_cer([pred], [rec["meta"]["transcript"]])["wer"] <= 0.2, pred


@pytest.mark.integration
@pytest.mark.skipif(not Path("/usr/share/ktuberling/sounds/en.soundtheme").is_file(),
                    reason="apt packages ktuberling-data klettres-data not installed (scripts/install.sh installs them)")
def test_human_speech_is_real_voices_with_spoken_spellings(tmp_path):
    from anymal.data.builders.human_speech import build_human_speech

    stats = build_human_speech(tmp_path, progress=False)
    assert stats["test"] >= 100 and set(stats["voices"]) == {"ktuberling:en", "klettres:en", "klettres:en_GB"}
    assert not stats["skipped"] and not (tmp_path / "train.jsonl").exists()  # a test-only set
    samples, skipped = read_jsonl(tmp_path / "test.jsonl", ["audio"])
    words = {s.meta["transcript"] for s in samples}
    assert {"palm tree", "broccoli", "camel", "dog"} <= words and not words & {"ch", "th", "palmtree", "brocolli"}
    wave, rate = sf.read(samples[0].messages[0]["content"][0]["path"])
    assert rate == 16000 and 0.3 < len(wave) / rate < 5 and samples[0].meta["licence"].startswith("GPL-2+")
