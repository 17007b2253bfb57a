#!/usr/bin/env bash
# Install what vwindow and its tests need on a fresh Debian 12 (run as root).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
    libzbar0 chromium postgresql coturn iproute2 ffmpeg fonts-noto-cjk fonts-droid-fallback \
    gcc libc6-dev linux-libc-dev python3-dev xvfb
python3 -m pip install --upgrade pip >/dev/null
python3 -m pip install -e ".[test]"
