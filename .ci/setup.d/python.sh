#!/usr/bin/env bash
# The Python package's test tools (c-tests/python/suite.sh): pytest and mypy,
# from PyPI, pinned to the versions the suite was written against. Idempotent:
# pip does nothing (and asks no index) when the pinned versions are present.
# The package itself needs neither, and no compiler: pip builds it with
# setuptools, which it fetches into an isolated build environment.
set -euo pipefail
python3 -m pip install --disable-pip-version-check --root-user-action=ignore -q \
    'pytest==9.2.0' 'mypy==2.4.1'
python3 -m pytest --version
python3 -m mypy --version
