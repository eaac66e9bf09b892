#!/usr/bin/env bash
# Set up everything the tests need on a fresh Linux machine, then run the whole suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k codec`).
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests use for real audio and windows: espeak-ng makes speech clips, sox
# converts them; PulseAudio (a private server with a null sink) + PortAudio + ALSA's pulse plugin
# give real playback/recording devices; the GL/X11/fontconfig libraries let Qt start offscreen;
# Xvfb, XTEST and the xcb libraries run the packaged app in a real X window (tests/test_installer.py).
PACKAGES="espeak-ng sox libsndfile1 pulseaudio pulseaudio-utils libportaudio2 libasound2-plugins libegl1 libgl1 libglib2.0-0 libx11-6 libxkbcommon0 libfontconfig1 libfreetype6 libdbus-1-3 xvfb libxtst6 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-render-util0 libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0 libxcb-shape0 libxcb-randr0"
missing=$(for p in $PACKAGES; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || echo "$p"; done)
missing=$(echo $missing)  # one line, space-separated
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "Missing system packages the tests need: $missing" >&2
    echo "  Install them as root:  apt-get install $missing   (or run this script as root: it installs them)." >&2
    if [ -n "${CI:-}" ]; then
      echo "  CI is set: the tests that need them would fail, so stopping here." >&2
      exit 1
    fi
    echo "  Without them the tests that need them are skipped (with CI set they fail)." >&2
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch pinned to a release whose CPU build this CI machine has on disk; the tests need no GPU.
.venv/bin/python -m pip install -q "torch==2.13.0" -e ".[test,build,server,cluster]"
# The llama.cpp backend (tests/test_llamacpp.py): pip compiles llama.cpp from source (~7 min on 2 cores);
# GGML_NATIVE=OFF: not tuned to the machine that builds it (baseline AVX2), so a copied venv still runs.
CMAKE_ARGS="-DGGML_NATIVE=OFF" .venv/bin/python -m pip install -q -e ".[llamacpp]"
# The reference X-Codec2 code, for parity tests only. --no-deps because its own pins (torch 2.5,
# torchaudio, torchao) would break the environment; tests/xcodec2_reference.py shims the rest.
.venv/bin/python -m pip install -q --no-deps xcodec2==0.1.5 vector-quantize-pytorch==1.17.8 \
  einx frozendict einops torchtune==0.6.1
exec .venv/bin/python -m pytest "$@"
