#!/usr/bin/env bash
# Runs each libFuzzer target for N seconds on its checked-in corpus (copied, so
# the tree is not written) and writes build/summary-fuzz.txt.
set -u
secs=${1:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
p=0 f=0
for bin in build/fuzz/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  work=$(mktemp -d)
  [ -d "tests/fuzz/corpus/$name" ] && cp -r "tests/fuzz/corpus/$name/." "$work/"
  dict=()
  [ -f "tests/fuzz/$name.dict" ] && dict=(-dict="tests/fuzz/$name.dict")
  if "$bin" "${dict[@]}" -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=1024 \
       -timeout=10 -artifact_prefix="build/fuzz/$name-" "$work" >"build/fuzz/$name.log" 2>&1; then
    p=$((p + 1)); echo "ok - $name ${secs}s"
  else
    f=$((f + 1)); echo "not ok - $name: see build/fuzz/$name.log"; tail -n 20 "build/fuzz/$name.log" | sed 's/^/#   /'
  fi
  rm -rf "$work"
done
echo "$p passed, $f failed" | tee build/summary-fuzz.txt
[ $f -eq 0 ]
