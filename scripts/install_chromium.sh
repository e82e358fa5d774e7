#!/bin/sh
# Set-up for the browser test (tests/test_report.py): install Debian's chromium when it is missing.
# Does nothing when /usr/bin/chromium exists; needs root (apt-get) otherwise, and only says so
# when it is not root: the browser test then skips with a reason. Never fails the caller.
set -u
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "install_chromium.sh: /usr/bin/chromium is missing and this is not root;" \
        "the browser test will skip (install it with: sudo apt-get install -y chromium)" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_chromium.sh: no apt-get here; the browser test will skip" >&2
    exit 0
fi
echo "install_chromium.sh: installing chromium (apt-get, about a minute)" >&2
export DEBIAN_FRONTEND=noninteractive
if apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; then
    echo "install_chromium.sh: $(/usr/bin/chromium --version 2>/dev/null)" >&2
else
    echo "install_chromium.sh: apt-get install chromium failed; the browser test will skip" >&2
fi
exit 0
