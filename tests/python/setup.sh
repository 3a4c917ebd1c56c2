#!/usr/bin/env bash
# Installs the Python packages the tests use (tests/python/requirements.txt) into
# target/python, once. Safe to run concurrently: each run builds in a private directory and
# the first to finish renames it into place.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/python
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import botocore, boto3, awscli, pyotp, jwt, cryptography, envoy" 2>/dev/null; then
    exit 0
fi
mkdir -p target
building=$(mktemp -d target/python.building.XXXXXX)
python3 -m venv "$building"
"$building/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
# Replace an outdated environment (requirements changed) with the new one.
rm -rf "$venv"
if ! mv -T "$building" "$venv" 2>/dev/null; then
    rm -rf "$building"
fi
