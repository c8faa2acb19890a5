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


# ---- Hugging Face datasets ---------------------------------------------------------------------
def _png_bytes(colour):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (20, 20), colour).save(buf, format="PNG")
    return buf.getvalue()


_FEATURES = {"image": {"_type": "Image"}, "question": {"dtype": "string", "_type": "Value"},
             "answer": {"dtype": "string", "_type": "Value"}}
_COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220), "yellow": (230, 220, 20)}


def _table(features=_FEATURES):
    import pyarrow as pa

    rows = {"image": [{"bytes": _png_bytes(c), "path": None} for c in _COLOURS.values()],
            "question": ["What colour is it?"] * 4, "answer": [f"{n.capitalize()}." for n in _COLOURS]}
    return pa.table(rows).replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})


def _hub_style(folder):
    """A dataset laid out as the Hub's parquet conversion writes it: data/<split>-00000-of-00001.parquet."""
    import pyarrow.parquet as pq

    (folder / "data").mkdir(parents=True)
    pq.write_table(_table(), folder / "data" / "train-00000-of-00001.parquet")
    pq.write_table(_table().slice(0, 2), folder / "data" / "test-00000-of-00001.parquet")
    return folder


def test_a_hub_style_parquet_dataset_with_an_image_column_trains(tmp_path, tiny_llm_dir, monkeypatch):
    import yaml

    from anymal.config import load_train_config
    from anymal.train.loop import train

    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path / "cache"))
    ds = _hub_style(tmp_path / "colours")
    recipe = {"model": {"llm": {"id": str(tiny_llm_dir)},
                        "modalities": {"image": {"encoder": "tiny-cnn", "projector": "mlp", "num_tokens": 4}}},
              "data": {"train": [str(ds)], "val": {"path": str(ds), "split": "test"}},
              "optim": {"lr": 1e-2, "max_steps": 6, "batch_size": 4, "warmup_steps": 1},
              "output_dir": str(tmp_path / "run"), "log_every": 2, "eval_every": 3}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    logs = []
    res = train(load_train_config(tmp_path / "r.yaml"), progress=False, log=logs.append)
    assert res.final_loss < res.first_loss and "skipped 0 samples" in logs
    assert len(list((tmp_path / "cache" / "media").rglob("*.png"))) == 4  # cells written once, by content
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["data"]["val"]["split"] == "test"


def test_parquet_by_content_splits_and_a_missing_split(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from anymal.config import DataSource
    from anymal.data.sources import HELD_OUT, read_source

    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path / "cache"))
    ds = _hub_style(tmp_path / "colours")
    train, _ = read_source(str(ds), ["image"])
    test, _ = read_source(str(ds), ["image"], splits=HELD_OUT)
    assert len(train) == 4 and len(test) == 2
    assert [p["type"] for p in train[0].messages[0]["content"]] == ["image", "text"]
    assert train[0].messages[1]["content"][0]["text"] == "Red." and train[0].where.endswith("parquet:row 0")
    misnamed = tmp_path / "looks-like.json"  # a parquet file given as a manifest is read as parquet, by its bytes
    pq.write_table(_table(), misnamed)
    assert len(read_source(str(misnamed), ["image"])[0]) == 4
    with pytest.raises(DataError, match="no .parquet files of split validation .*it has test, train"):
        read_source(DataSource(path=str(ds), split="validation"), ["image"])


def test_save_to_disk_folders_and_class_labels(tmp_path, monkeypatch):
    import pyarrow as pa

    from anymal.data.sources import read_source

    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path / "cache"))
    features = {"image": {"_type": "Image"}, "label": {"_type": "ClassLabel", "names": list(_COLOURS)}}
    table = pa.table({"image": [{"bytes": _png_bytes(c), "path": f"{n}.png"} for n, c in _COLOURS.items()],
                      "label": [0, 1, 2, 3]})
    for split in ("train", "test"):  # DatasetDict.save_to_disk: one folder per split
        folder = tmp_path / "dd" / split
        folder.mkdir(parents=True)
        with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink, \
                pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        (folder / "dataset_info.json").write_text(json.dumps({"features": features}))
        (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    (tmp_path / "dd" / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    samples, _ = read_source(str(tmp_path / "dd"), ["image"])
    assert [_text(s, "assistant")[0] for s in samples] == list(_COLOURS)
    assert _text(samples[0], "user") == ["What is this picture?"]


def test_imagefolder_with_metadata_audiofolder_by_class_and_media_the_run_lacks(tmp_path, images):
    import shutil

    from anymal.config import DataSource
    from anymal.data.sources import read_source

    folder = tmp_path / "imgs" / "train"
    folder.mkdir(parents=True)
    shutil.copy(images[0], folder / "a.png")
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "text": "A red square."}) + "\n" +
                                           json.dumps({"file_name": "gone.png", "text": "Nothing."}) + "\n")
    samples, skipped = read_source(str(tmp_path / "imgs"), ["image"], on_error="skip")
    assert _text(samples[0], "assistant") == ["A red square."] and _text(samples[0], "user") == ["Describe the picture."]
    assert skipped.total == 1 and "does not exist" in skipped.summary()
    for kind in ("dog", "cat"):
        (tmp_path / "sounds" / kind).mkdir(parents=True)
        (tmp_path / "sounds" / kind / f"{kind}1.wav").write_bytes(b"RIFF0000WAVEfmt ")
    sounds, _ = read_source(str(tmp_path / "sounds"), ["audio"])
    assert sorted(_text(s, "assistant")[0] for s in sounds) == ["cat", "dog"]
    assert _text(sounds[0], "user") == ["What is this sound?"]
    # audio cells in a run that reads only pictures: counted, never trained as text
    none, skipped = read_source(DataSource(path=str(tmp_path / "sounds"), format="audiofolder"), ["image"],
                                on_error="skip")
    assert not none and skipped.total == 2 and "this run has no audio modality" in skipped.summary()


def test_hub_ids_come_from_the_local_cache_only(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from anymal.data.sources import read_source

    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path / "cache"))
    hub = tmp_path / "hub"
    repo = hub / "datasets--someone--colours"
    _hub_style(repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert len(read_source("hf://someone/colours", ["image"])[0]) == 4
    assert len(read_source("hf://datasets/someone/colours", ["image"])[0]) == 4
    with pytest.raises(DataError, match="hf://someone/absent: not in the Hugging Face cache.*hf download someone/absent"):
        read_source("hf://someone/absent", ["image"])


def test_columns_map_other_names_and_rows_without_text_are_named(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from anymal.config import DataSource
    from anymal.data.sources import read_source

    monkeypatch.setenv("ANYMAL_CACHE", str(tmp_path / "cache"))
    table = pa.table({"img": [{"bytes": _png_bytes((1, 2, 3)), "path": None}], "q": ["Colour?"], "a": ["Black."],
                      "notes": ["x"]})
    pq.write_table(table, tmp_path / "t.parquet")
    got, _ = read_source(DataSource(path=str(tmp_path / "t.parquet"), columns={"image": "img", "question": "q",
                                                                               "answer": "a"}), ["image"])
    assert _text(got[0], "user") == ["Colour?"] and _text(got[0], "assistant") == ["Black."]
    with pytest.raises(DataError, match=r"t.parquet:row 0: no text to learn from.*columns: img, q, a, notes"):
        read_source(DataSource(path=str(tmp_path / "t.parquet"), columns={"image": "img"}), ["image"])
