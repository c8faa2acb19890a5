"""Voice activity (issue 36): Silero VAD as a perception part of the audio modality, on real clips; the
speech-or-sound task reads the audio set's clips once each and scores yes/no answers."""
import numpy as np
import pytest
import soundfile as sf

from anymal.paths import PACKAGE_DIR
from anymal.registry import ENCODERS

EXAMPLES = PACKAGE_DIR / "assets" / "examples"


@pytest.fixture(scope="module")
def vad():
    return ENCODERS.build("silero-vad", "audio")


def test_speech_rows_say_where_the_speech_is_and_sounds_have_none(vad, tmp_path):
    for name in ("speech-call-forward.flac", "speech-unseen-voice.flac"):
        rows = vad(vad.preprocess(EXAMPLES / name)[None])[0]
        assert vad.labels[int(rows[0, 0]) - 1] == "speech" and rows[0, 1] > 0.5  # speech, with its probability
        assert 0 <= rows[0, 3] < rows[0, 5] <= 1 and 0 < rows[0, 7] <= 1  # start < end, the share that is speech
        assert vad.speech_seconds(EXAMPLES / name) > 0.5
    for name in ("cow-sound.flac", "goat-sound.flac"):
        rows = vad(vad.preprocess(EXAMPLES / name)[None])[0]
        assert vad.labels[int(rows[0, 0]) - 1] == "no speech" and not rows[1:].any()
        assert vad.speech_seconds(EXAMPLES / name) == 0
    # speech after 2 s of silence: the segment starts where the speech does
    wave, rate = sf.read(EXAMPLES / "speech-call-forward.flac")
    padded = np.concatenate([np.zeros(2 * rate), wave])
    sf.write(tmp_path / "late.wav", padded, rate)
    rows = vad(vad.preprocess(tmp_path / "late.wav")[None])[0]
    assert rows[0, 3] * len(padded) / rate == pytest.approx(2.0, abs=0.3)
    # a clip shorter than one 32 ms chunk: no speech, not an error
    sf.write(tmp_path / "tick.wav", np.random.default_rng(0).uniform(-0.1, 0.1, 100), 16000)
    assert vad.labels[int(vad(vad.preprocess(tmp_path / "tick.wav")[None])[0, 0, 0]) - 1] == "no speech"


def test_speech_or_sound_reads_each_clip_once_and_judges_yes_no(tmp_path):
    import json

    from anymal.data.benchmarks import Files
    from anymal.eval.runner import score_rows, split_reference
    from anymal.eval.tasks import get_task

    for name in ("speech-call-forward.flac", "cow-sound.flac"):
        (tmp_path / name).write_bytes((EXAMPLES / name).read_bytes())
    ask = lambda clip, kind, q: {"messages": [{"role": "user", "content": f"<audio>{q}"},  # noqa: E731
                                              {"role": "assistant", "content": "x"}], "audios": [clip], "meta": {"kind": kind}}
    (tmp_path / "test.jsonl").write_text("\n".join(json.dumps(r) for r in [
        ask("speech-call-forward.flac", "speech", "Transcribe it."), ask("speech-call-forward.flac", "speech", "Again."),
        ask("cow-sound.flac", "sound", "What is it?")]) + "\n")
    t = get_task("speech-or-sound")
    samples, _ = t.reader(Files(tmp_path / "test.jsonl"))
    assert [s.meta["group"] for s in samples] == ["speech", "sound"]
    preds = ["Yes, someone is.", "Yes."]
    rows, scores = score_rows(t, samples, preds, [split_reference(s.messages)[1] for s in samples])
    assert [r["correct"] for r in rows] == [True, False] and scores["correct"] == 0.5
    found = t.baseline(samples, [], False)
    assert found["silero-vad (speech found or not)"]["correct"] == 1.0 and found["always 'Yes.'"]["correct"] == 0.5
