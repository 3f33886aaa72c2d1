#!/usr/bin/env bash
# PII accuracy benchmark: pg_aegis's scanner (aegis-core, no PostgreSQL) and
# Microsoft Presidio's pattern recognizers on the same generated corpus.
#
#   bash benches/pii_accuracy/run.sh
#
# Needs: cargo, python3 >= 3.10 with venv, PyPI reachable the first time (the
# venv is kept). Touches no PostgreSQL cluster; no network after pip.
# Environment: AEGIS_PII_VENV (default /var/tmp/aegis-pii-venv),
#              AEGIS_PII_OUT (default /var/tmp/aegis-pii-accuracy),
#              AEGIS_PII_LINES (default 8000), PYTHON (default python3).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
venv=${AEGIS_PII_VENV:-/var/tmp/aegis-pii-venv}
out=${AEGIS_PII_OUT:-/var/tmp/aegis-pii-accuracy}
lines=${AEGIS_PII_LINES:-8000}
# The corpus depends on Faker and phonenumbers; Presidio's results on
# presidio-analyzer, phonenumbers and tldextract (its bundled suffix list).
pins=(faker==40.63.0 phonenumbers==9.0.43 presidio-analyzer==2.2.366 tldextract==5.4.0)

t_start=$(date +%s.%N)
secs() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

if [ ! -x "$venv/bin/python" ]; then
    echo "== creating $venv"
    "${PYTHON:-python3}" -m venv "$venv"
fi
# A no-op without network when the pins are already installed.
"$venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}"
py="$venv/bin/python"
mkdir -p "$out"

echo "== corpus"
"$py" "$here/gen_corpus.py" --lines "$lines" > "$out/corpus.jsonl"

echo "== pg_aegis (aegis-core example pii_eval)"
(cd "$repo" && cargo build --release -q -p aegis-core --example pii_eval)
target=$(cd "$repo" && cargo metadata --format-version 1 --no-deps \
    | "$py" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
t=$(date +%s.%N)
"$target/release/examples/pii_eval" < "$out/corpus.jsonl" > "$out/preds_aegis.jsonl" 2> "$out/aegis.log"
cat "$out/aegis.log"
echo "   ($(secs "$t") s with JSON I/O)"

echo "== Presidio pattern recognizers"
t=$(date +%s.%N)
"$py" "$here/run_presidio.py" < "$out/corpus.jsonl" > "$out/preds_presidio.jsonl" 2> "$out/presidio.log"
cat "$out/presidio.log"
echo "   ($(secs "$t") s with start-up)"

echo "== score"
"$py" "$here/score.py" --gold "$out/corpus.jsonl" \
    --pred aegis="$out/preds_aegis.jsonl" --pred presidio="$out/preds_presidio.jsonl" \
    --md "$out/results.md" --debug "$out/debug.txt" --examples 30 --unsupported presidio=PERSON,SECRET \
    --note "$(sed -n 's/^config: //p' "$out/presidio.log")." \
    --note "Throughput (scan only, one core): pg_aegis $(grep -o '[0-9.]* MB/s' "$out/aegis.log"), Presidio $(grep -o '[0-9.]* MB/s' "$out/presidio.log")."
echo
echo "results: $out/results.md; misses and false positives: $out/debug.txt"
echo "run.sh took $(secs "$t_start") s"
