#!/usr/bin/env bash
# Installs everything mser needs on a Debian/Ubuntu machine: system packages, then a virtual
# environment in .venv with mser (editable) and its extras, at the versions in constraints.txt.
# Safe to run again. Afterwards: source .venv/bin/activate (or call .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
# espeak-ng: demo corpus generator; portaudio19-dev: builds pyaudio; pulseaudio: microphone tests.
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    libsndfile1 espeak-ng festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts \
    portaudio19-dev pulseaudio pulseaudio-utils gcc python3-dev python3-venv

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
# constraints.txt: the exact releases the tests pass with (pyproject.toml only gives ranges)
.venv/bin/python -m pip install -q -c constraints.txt -e ".[mic,onnx,hf,funasr,opensmile,crepe,vad,dev]"
.venv/bin/python -c "import mser, torch, torchaudio; print('mser', mser.__version__, '| torch', torch.__version__, '| torchaudio', torchaudio.__version__)"
