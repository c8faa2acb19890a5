"""Manifests in both formats, and every kind of bad input named precisely."""
import json

import pytest
from PIL import Image

from anymal.data.jsonl import read_jsonl
from anymal.encoders.media import load_image
from anymal.errors import DataError, InputError


def _write(path, lines):
    path.write_text("\n".join(l if isinstance(l, str) else json.dumps(l) for l in lines) + "\n")
    return path


def test_llava_and_messages_formats_agree(tmp_path, images):
    llava = {"id": "1", "image": str(images[0]), "conversations": [
        {"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "A frog."}]}
    msgs = {"messages": [{"role": "user", "content": "<image>\nWhat is this?"},
                         {"role": "assistant", "content": "A frog."}], "images": [str(images[0])]}
    a, _ = read_jsonl(_write(tmp_path / "a.jsonl", [llava]), ["image"])
    b, _ = read_jsonl(_write(tmp_path / "b.jsonl", [msgs]), ["image"])
    assert a[0].messages == b[0].messages == [
        {"role": "user", "content": [{"type": "image", "path": str(images[0])}, {"type": "text", "text": "What is this?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A frog."}]}]


def test_multi_image_placeholders_and_relative_paths(tmp_path, images):
    (tmp_path / "x.png").write_bytes(images[0].read_bytes())
    (tmp_path / "y.png").write_bytes(images[1].read_bytes())
    rec = {"messages": [{"role": "user", "content": "Compare <image> with <image>."},
                        {"role": "assistant", "content": "Same."}], "images": ["x.png", "y.png"]}
    s, _ = read_jsonl(_write(tmp_path / "m.jsonl", [rec]), ["image"])
    parts = s[0].messages[0]["content"]
    assert [p["type"] for p in parts] == ["text", "image", "text", "image", "text"]
    assert parts[1]["path"] == str(tmp_path / "x.png") and parts[3]["path"] == str(tmp_path / "y.png")


def test_malformed_lines_name_file_and_line(tmp_path, images):
    good = {"image": str(images[0]), "conversations": [{"from": "human", "value": "<image>Hi"}, {"from": "gpt", "value": "Yo"}]}
    lines = [good, "{not json", {"conversations": [{"from": "robot", "value": "x"}]},
             {"image": "missing.png", "conversations": good["conversations"]},
             {"images": [str(images[0])], "messages": [{"role": "user", "content": "<image><image>"},
                                                     {"role": "assistant", "content": "x"}]},
             {"messages": [{"role": "user", "content": "no answer"}]}]
    f = _write(tmp_path / "bad.jsonl", lines)
    with pytest.raises(DataError, match=r"bad.jsonl:2: malformed JSON"):
        read_jsonl(f, ["image"], on_error="fail")
    samples, skipped = read_jsonl(f, ["image"], on_error="skip")
    assert len(samples) == 1 and skipped.total == 5
    text = skipped.summary()
    assert "skipped 5 samples" in text and "bad.jsonl:4" in text and "does not exist" in text
    assert "more <image> placeholders" in text and "no assistant turn" in text


def test_zero_byte_media_is_refused_at_read_time(tmp_path):
    (tmp_path / "z.png").write_bytes(b"")
    f = _write(tmp_path / "z.jsonl", [{"image": "z.png", "conversations": [
        {"from": "human", "value": "<image>"}, {"from": "gpt", "value": "x"}]}])
    with pytest.raises(DataError, match=r"z.jsonl:1: field 'image': media file .*z.png is empty"):
        read_jsonl(f, ["image"], on_error="fail")


@pytest.fixture
def bad_images(tmp_path, images):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(images[0].read_bytes()[:60])  # header survives, pixel data truncated
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    fake = tmp_path / "fake.png"
    fake.write_text("this is not an image, just text with a .png name\n")
    huge = tmp_path / "huge.png"
    Image.new("1", (10000, 10000)).save(huge)  # 100 MP declared, a few kB on disk
    return {"corrupt": corrupt, "empty": empty, "fake": fake, "huge": huge}


def test_bad_images_are_clear_errors(bad_images):
    with pytest.raises(InputError, match=r"corrupt.png: corrupt or truncated image"):
        load_image(bad_images["corrupt"])
    with pytest.raises(InputError, match=r"empty.png: empty file \(0 bytes\)"):
        load_image(bad_images["empty"])
    with pytest.raises(InputError, match=r"fake.png: not a readable image"):
        load_image(bad_images["fake"])
    with pytest.raises(InputError, match=r"huge.png: 10000x10000 = 100 MP exceeds the 40 MP limit"):
        load_image(bad_images["huge"])
    with pytest.raises(InputError, match="no such file"):
        load_image("/nonexistent/x.png")


def test_huge_image_is_refused_before_decoding(bad_images):
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InputError):
        load_image(bad_images["huge"])
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # < 50 MB more peak RSS


def test_alpha_is_composited_on_white(tmp_path):
    p = tmp_path / "a.png"
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(p)
    assert load_image(p).getpixel((0, 0)) == (255, 255, 255)


def test_llava_json_array_files_are_read_and_errors_name_the_index(tmp_path, images):
    good = {"id": "1", "image": str(images[0]), "conversations": [
        {"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "A frog."},
        {"from": "human", "value": "Sure?"}, {"from": "gpt", "value": "Yes."}]}
    bad = {"id": "2", "image": "missing.png", "conversations": good["conversations"]}
    f = tmp_path / "llava_instruct.json"
    f.write_text(json.dumps([good, bad], indent=2))
    samples, skipped = read_jsonl(f, ["image"], on_error="skip")
    assert len(samples) == 1 and [m["role"] for m in samples[0].messages] == ["user", "assistant"] * 2
    assert skipped.total == 1 and "llava_instruct.json[1]: field 'image'" in skipped.summary()
    (tmp_path / "broken.json").write_text('[{"id": 1,\n  oops}]')
    with pytest.raises(DataError, match=r"broken.json:2: malformed JSON"):
        read_jsonl(tmp_path / "broken.json", ["image"])
    (tmp_path / "obj.json").write_text('{"id": 1}')
    with pytest.raises(DataError, match="expected a JSON array of samples"):
        read_jsonl(tmp_path / "obj.json", ["image"])
