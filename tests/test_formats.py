"""Training data in the formats researchers already have: LLaMA-Factory/ShareGPT, ms-swift messages,
alpaca rows and Hugging Face datasets (parquet, save_to_disk, imagefolder, Hub ids) — read right, or
refused and counted, never trained as text."""
import json

import pytest

from anymal.data.jsonl import read_jsonl
from anymal.errors import DataError


def _write(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def _text(sample, role):
    return [p["text"] for m in sample.messages if m["role"] == role for p in m["content"] if p["type"] == "text"]


def test_llama_factory_video_record_without_a_video_modality_is_counted_not_trained(images, tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 16)
    recs = [{"messages": [{"role": "user", "content": "<video>What happens?"}, {"role": "assistant", "content": "A run."}],
             "videos": ["clip.mp4"]},
            {"conversations": [{"from": "human", "value": "<video>Describe."}, {"from": "gpt", "value": "Cars."}]},
            {"messages": [{"role": "user", "content": "<image>Colour?"}, {"role": "assistant", "content": "Red."}],
             "images": [str(images[0])], "system": "You are terse."}]
    samples, skipped = read_jsonl(_write(tmp_path / "lf.jsonl", recs), ["image"], on_error="skip")
    assert len(samples) == 1 and skipped.total == 2
    assert "lists 1 video file(s), and this run has no video modality" in skipped.summary()
    assert "has a <video> tag, and this run has no video modality" in skipped.summary()
    assert samples[0].messages[0] == {"role": "system", "content": [{"type": "text", "text": "You are terse."}]}
    with pytest.raises(DataError, match=r"lf.jsonl:1: the record lists 1 video"):
        read_jsonl(tmp_path / "lf.jsonl", ["image"], on_error="fail")


def test_sharegpt_system_column_tag_counts_and_tool_turns(images, tmp_path):
    two = [str(images[0]), str(images[1])]
    recs = [{"conversations": [{"from": "human", "value": "<image><image>Same?"}, {"from": "gpt", "value": "No."}],
             "system": "Be brief.", "images": two},
            {"conversations": [{"from": "human", "value": "<image>Same?"}, {"from": "gpt", "value": "No."}], "images": two},
            {"conversations": [{"from": "human", "value": "Weather?"}, {"from": "function_call", "value": "{}"},
                               {"from": "observation", "value": "sun"}, {"from": "gpt", "value": "Sunny."}]},
            {"conversations": [{"from": "system", "value": "A"}, {"from": "human", "value": "B"},
                               {"from": "gpt", "value": "C"}], "system": "D"}]
    samples, skipped = read_jsonl(_write(tmp_path / "sg.jsonl", recs), ["image"], on_error="skip")
    assert len(samples) == 1 and _text(samples[0], "system") == ["Be brief."]
    assert [p["type"] for p in samples[0].messages[1]["content"]] == ["image", "image", "text"]
    text = skipped.summary()
    assert "1 listed image file(s) have no <image> placeholder" in text and "tool calling is not supported" in text
    assert "both a 'system' field and a system turn" in text


def test_alpaca_rows_with_history_input_and_images(images, tmp_path):
    recs = [{"instruction": "<image>What colour is it?", "input": "Answer in one word.", "output": "Red.",
             "system": "You see pictures.", "history": [["Hi", "Hello."]], "images": [str(images[0])]},
            {"instruction": "Say hi.", "output": "Hi."},
            {"instruction": "No answer"}]
    samples, skipped = read_jsonl(_write(tmp_path / "alpaca.jsonl", recs), ["image"], on_error="skip")
    assert [m["role"] for m in samples[0].messages] == ["system", "user", "assistant", "user", "assistant"]
    assert samples[0].messages[3]["content"][0]["type"] == "image"
    assert _text(samples[0], "user") == ["Hi", "What colour is it?\nAnswer in one word."]
    assert _text(samples[1], "assistant") == ["Hi."]
    assert skipped.total == 1 and "field 'output': expected a string (alpaca format)" in skipped.summary()
