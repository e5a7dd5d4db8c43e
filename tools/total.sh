#!/usr/bin/env bash
# Sums the "N passed, N failed[, N skipped]" lines of the summary files given
# and prints the grand total as the run's last line; exits 1 on any failure.
set -u
p=0 f=0 s=0
for file in "$@"; do
  if [ ! -s "$file" ]; then
    echo "total: $file is missing: that stage did not finish (see the output above)" >&2
    f=$((f + 1))
    continue
  fi
  while read -r line; do
    if [[ $line =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
      p=$((p + BASH_REMATCH[1])); f=$((f + BASH_REMATCH[2])); s=$((s + ${BASH_REMATCH[4]:-0}))
    fi
  done < "$file"
done
if [ "$s" -gt 0 ]; then echo "$p passed, $f failed, $s skipped"; else echo "$p passed, $f failed"; fi
[ "$f" -eq 0 ] && [ "$p" -gt 0 ]
