#!/usr/bin/env bash
# The Python side of the benchmarks (issue 6): a venv under target/ (never committed) with
# the Typst compiler from PyPI, matplotlib + WeasyPrint, and fast_bitrix24. WeasyPrint
# needs Pango from Debian; this installs it when missing (benchmarks only, tests never
# need any of this).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! ldconfig -p | grep -q libpangoft2-1.0; then
    apt-get install -y libpango-1.0-0 libpangoft2-1.0-0
fi
[ -x target/bench-venv/bin/python ] || python3 -m venv target/bench-venv
target/bench-venv/bin/pip install -q typst matplotlib weasyprint fast_bitrix24
target/bench-venv/bin/pip list 2>/dev/null | grep -iE '^(typst|matplotlib|weasyprint|fast.bitrix24) '
