#!/usr/bin/env bash
# What the benchmarks compare salespulse with (issue 6), all under target/ (never
# committed): the Typst CLI of the same version as salespulse's typst (cargo install, ~10
# minutes on 2 cores, once), and a venv with the Typst compiler from PyPI, matplotlib +
# WeasyPrint, and fast_bitrix24. WeasyPrint needs Pango from Debian; this installs it when
# missing (benchmarks only, tests never need any of this).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! ldconfig -p | grep -q libpangoft2-1.0; then
    apt-get install -y libpango-1.0-0 libpangoft2-1.0-0
fi
typst_version=$(awk '/^name = "typst"$/ { getline; gsub(/[^0-9.]/, ""); print }' Cargo.lock)
[ -x target/typst-cli/bin/typst ] || cargo install --locked "typst-cli@$typst_version" --root target/typst-cli
target/typst-cli/bin/typst --version
[ -x target/bench-venv/bin/python ] || python3 -m venv target/bench-venv
target/bench-venv/bin/pip install -q typst matplotlib weasyprint fast_bitrix24
target/bench-venv/bin/pip list 2>/dev/null | grep -iE '^(typst|matplotlib|weasyprint|fast.bitrix24) '
