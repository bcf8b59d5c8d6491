#!/usr/bin/env bash
# AWS's own checkers for the tests: moto in server mode (an implementation of AWS's API semantics written
# outside this project) and cfn-lint (CloudFormation's template linter). Pinned, installed from the Python
# package index into one virtual environment that reruns reuse; its bin/ is what the tests look for.
# Idempotent: a venv that already holds the pinned versions is left as it is.
set -euo pipefail

MOTO_VERSION=5.2.5
CFN_LINT_VERSION=1.58.0
VENV="${BROKER_PYTHON_TOOLS:-/opt/broker-ci/python-tools}"
STAMP="$VENV/.pins-moto-$MOTO_VERSION-cfn-lint-$CFN_LINT_VERSION"

if [ -f "$STAMP" ] && [ -x "$VENV/bin/moto_server" ] && [ -x "$VENV/bin/cfn-lint" ]; then
  echo "Python tools ready: moto $MOTO_VERSION, cfn-lint $CFN_LINT_VERSION ($VENV)"
  exit 0
fi

command -v python3 >/dev/null || { echo "python3 is needed for moto and cfn-lint" >&2; exit 1; }
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  "moto[server]==$MOTO_VERSION" "cfn-lint==$CFN_LINT_VERSION"
rm -f "$VENV"/.pins-*
touch "$STAMP"
echo "Python tools installed: moto $MOTO_VERSION, cfn-lint $CFN_LINT_VERSION ($VENV)"
