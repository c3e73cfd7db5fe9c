#!/usr/bin/env bash
# Installs the system libraries the Python stack needs (open3d needs libusb-1.0).
# As root it installs what is missing with apt-get; otherwise it says what to install and fails.
set -euo pipefail
missing=()
has() { ldconfig -p 2>/dev/null | grep -q "$1"; }
has 'libusb-1.0.so.0' || missing+=(libusb-1.0-0)           # import open3d
has 'libEGL.so.1' || missing+=(libegl1)                     # offscreen rendering (EGL)
has 'libEGL_mesa.so.0' || missing+=(libegl-mesa0)
ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1 || missing+=(libgl1-mesa-dri)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing system packages: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
    echo "error: open3d needs the system library(ies) ${missing[*]}." >&2
    echo "       install them first, e.g.: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
