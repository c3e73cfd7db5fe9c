#!/usr/bin/env bash
# Installs the system libraries the Python stack needs (open3d needs libusb-1.0).
# As root it installs what is missing with apt-get; otherwise it says what to install and fails.
# Optional: `--browser` (or BENCHMARK_BROWSER_DEPS=1) also installs Debian's chromium, the headless
# browser of the report's browser test (tests/test_report_browser.py, slow suite); without it
# that test is skipped, and a missing browser is never an error.
set -euo pipefail
browser=${BENCHMARK_BROWSER_DEPS:-0}
for arg in "$@"; do
    case "$arg" in
        --browser) browser=1 ;;
        *) echo "usage: $0 [--browser]" >&2; exit 2 ;;
    esac
done
missing=()
has() { ldconfig -p 2>/dev/null | grep -q "$1"; }
has 'libusb-1.0.so.0' || missing+=(libusb-1.0-0)           # import open3d
has 'libEGL.so.1' || missing+=(libegl1)                     # offscreen rendering (EGL)
has 'libEGL_mesa.so.0' || missing+=(libegl-mesa0)
ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1 || missing+=(libgl1-mesa-dri)
if [ "$browser" = 1 ]; then
    if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "installing the optional headless browser: chromium"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
                apt-get install -y -qq chromium >/dev/null \
                || echo "warning: chromium could not be installed; the browser test will skip" >&2
        else
            echo "note: no chromium; the report's browser test will skip (sudo apt-get install chromium)" >&2
        fi
    fi
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing system packages: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
    echo "error: open3d needs the system library(ies) ${missing[*]}." >&2
    echo "       install them first, e.g.: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
