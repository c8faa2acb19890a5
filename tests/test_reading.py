"""Reading text in pictures (issue 36): RapidOCR as a perception part that writes, on pictures with text
rendered onto a real photo; through a model, the LLM reads the lines as its own text."""
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from anymal.paths import PACKAGE_DIR
from anymal.registry import ENCODERS

EXAMPLES = PACKAGE_DIR / "assets" / "examples"


@pytest.fixture(scope="module")
def ocr():
    return ENCODERS.build("rapidocr-text", "image")


def _sign(path, lines):
    img = Image.open(EXAMPLES / "cup.jpg").convert("RGB")
    draw, font = ImageDraw.Draw(img), ImageFont.load_default(size=44)
    for k, text in enumerate(lines):
        draw.rectangle([20, 20 + 70 * k, 40 + 30 * len(text), 80 + 70 * k], fill="white")
        draw.text((30, 28 + 70 * k), text, fill="black", font=font)
    img.save(path)
    return path


def _text(ocr, rows):
    return "".join(ocr.labels[int(i) - 1] for i in rows[:, 0] if i > 0).strip()


def test_lines_are_read_in_order_with_their_boxes(ocr, tmp_path):
    rows = ocr(ocr.preprocess(_sign(tmp_path / "sign.png", ["NO PARKING", "EXIT 12"]))[None])[0]
    assert _text(ocr, rows).replace(" ", "") == "NOPARKING\nEXIT12"  # RapidOCR may drop a space
    first = rows[0]
    assert first[1] > 0.8 and 0 <= first[3] < first[5] <= 1 and 0 <= first[4] < first[6] <= 0.5
    blank = ocr(ocr.preprocess(EXAMPLES / "goat.png")[None])[0]
    assert not blank.any()  # no text: no rows


def test_a_model_hands_the_llm_the_text_read(tiny_llm_dir, tmp_path):
    from anymal import AnyMAL
    from anymal.config import LLMConfig, ModalityConfig, ModelConfig

    torch.manual_seed(0)
    model = AnyMAL.from_config(ModelConfig(llm=LLMConfig(id=str(tiny_llm_dir), max_length=256), modalities={
        "image": ModalityConfig(encoder="tiny-cnn", projector="mlp", num_tokens=4, perception=["rapidocr-text"])}))
    sign = _sign(tmp_path / "sign.png", ["STOP"])
    projector = model.projectors["image"]
    feats = model.encoders["image"].encode([str(sign)])
    rows = feats[0][-256:, :8]  # the composed features: the picture's tokens, then the part's rows (ROW wide)
    texts = [p.texts(rows[None].float()) for p in projector.modules() if hasattr(p, "texts")]
    assert texts and texts[0] == ["STOP"]
    assert isinstance(model.chat("What does the sign say?", image=str(sign), max_new_tokens=2), str)


def test_tesseract_reads_a_screenshot_with_its_spaces(tmp_path):
    tess = ENCODERS.build("tesseract-text", "image")
    img = Image.new("RGB", (900, 220), "white")
    draw, font = ImageDraw.Draw(img), ImageFont.load_default(size=36)
    for k, text in enumerate(["The quick brown fox jumps.", "Total: $42.50 (3 items)"]):
        draw.text((30, 30 + 80 * k), text, fill="black", font=font)
    img.save(tmp_path / "screen.png")
    rows = tess(tess.preprocess(tmp_path / "screen.png")[None])[0]
    assert _text(tess, rows) == "The quick brown fox jumps.\nTotal: $42.50 (3 items)"
    assert 0.5 < rows[0, 1] <= 1 and rows[0, 4] < 0.5  # confident; the first line in the top half
    assert not tess(tess.preprocess(EXAMPLES / "goat.png")[None])[0].any()
