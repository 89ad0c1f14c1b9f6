#!/usr/bin/env bash
# Install checkov (PyPI) into a venv of its own, once per pinned version: its dependency pins
# (packaging, python-dateutil, ...) conflict with pytest's and the kubernetes client's, so it
# cannot live in .venv. Prints the path of the checkov executable.
# tests/unit/test_chart_checkov.py runs it (and calls this script if it is missing).
set -euo pipefail
version="${CHECKOV_VERSION:-3.3.30}"
dest="${KOPFSCALE_CACHE:-$HOME/.cache/kopfscale}/checkov-$version"
if [[ ! -f "$dest/.complete" ]]; then
    echo "[checkov] installing checkov $version into $dest" >&2
    rm -rf "$dest"
    "${PYTHON:-python3}" -m venv "$dest"
    "$dest/bin/pip" install --quiet --disable-pip-version-check "checkov==$version" >&2
    touch "$dest/.complete"
fi
echo "$dest/bin/checkov"
