#!/usr/bin/env bash
# Runs every tests/integration/test_*.sh and prints the summed summary line.
set -u
dir=$(cd "$(dirname "$0")" && pwd)
p=0 f=0 s=0
for t in "$dir"/test_*.sh; do
  [ -f "$t" ] || continue
  echo "# $(basename "$t")"
  out=$(bash "$t" 2>&1)
  rc=$?
  printf '%s\n' "$out" | sed '$d'
  last=$(printf '%s\n' "$out" | tail -n 1)
  if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
    p=$((p + BASH_REMATCH[1])); f=$((f + BASH_REMATCH[2])); s=$((s + ${BASH_REMATCH[4]:-0}))
    [ $rc -eq 0 ] || [ "${BASH_REMATCH[2]}" -gt 0 ] || { f=$((f + 1)); echo "not ok - $(basename "$t") exited $rc"; }
  else
    printf '%s\n' "$last"
    f=$((f + 1)); echo "not ok - $(basename "$t") ended without a summary (exit $rc)"
  fi
done
if [ $s -gt 0 ]; then echo "$p passed, $f failed, $s skipped"; else echo "$p passed, $f failed"; fi
[ $f -eq 0 ]
