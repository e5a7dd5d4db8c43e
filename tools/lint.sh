#!/usr/bin/env bash
# House lint (STYLE.md 18): banned functions, include rules, comment rules,
# then clang-format --dry-run on every tracked C file.
set -u
cd "$(dirname "$0")/.." || exit 1
rc=0
files=$(git ls-files 'src/*.c' 'src/*.h' 2>/dev/null || find src -name '*.[ch]')

report() { echo "lint: $1" >&2; rc=1; }

# Banned everywhere in src/.
banned='\b(sprintf|vsprintf|strcpy|strcat|strncpy|strncat|strtok|gets|scanf|sscanf|fscanf|atoi|atol|atof|alloca|system|popen|tmpnam|mktemp|asctime|ctime|gmtime|localtime)\s*\('
for f in $files; do
  out=$(grep -nE "$banned" "$f" | grep -vE '^\s*[0-9]+:\s*(/\*|\*)')
  [ -n "$out" ] && report "$f: banned function: $out"
  # Raw heap calls outside core/alloc.c.
  if [ "$f" != src/core/alloc.c ]; then
    out=$(grep -nE '(^|[^_a-z.>])(malloc|calloc|realloc|free)\s*\(' "$f" | grep -vE '^\s*[0-9]+:\s*(/\*|\*)')
    [ -n "$out" ] && report "$f: raw allocation (use core/alloc.h): $out"
  fi
  # rand()/random() outside tests.
  out=$(grep -nE '(^|[^_a-z.])(rand|random|srand)\s*\(' "$f")
  [ -n "$out" ] && report "$f: rand/random (use core/rand.h): $out"
  # TODO without an issue number.
  out=$(grep -nE 'TODO' "$f" | grep -vE 'TODO\(#[0-9]+\)|TODO #[0-9]+')
  [ -n "$out" ] && report "$f: TODO without #issue: $out"
done

# // comments in headers.
for f in $(echo "$files" | grep '\.h$'); do
  out=$(grep -nE '^\s*//' "$f")
  [ -n "$out" ] && report "$f: // comment in a header: $out"
done

# Another module's _int.h.
for f in $files; do
  mod=$(echo "$f" | cut -d/ -f2)
  out=$(grep -nE '#include "[a-z]+/[a-z_]+_int\.h"' "$f" | grep -v "\"$mod/")
  [ -n "$out" ] && report "$f: includes another module's internal header: $out"
done

# The sandbox's trusted base stays small.
out=$(grep -nE '#include "(gateway|http|vm|api)/|openssl/|libpq|libvirt' src/sandbox/*.[ch] 2>/dev/null)
[ -n "$out" ] && report "sandbox must not depend on: $out"

# Secrets compare in constant time.
for f in src/gateway/keys.c src/api/keys.c src/core/ct.c; do
  [ -f "$f" ] || continue
  out=$(grep -nE '\b(memcmp|strcmp)\s*\(' "$f")
  [ -n "$out" ] && report "$f: memcmp/strcmp on secrets: $out"
done

if command -v clang-format >/dev/null 2>&1; then
  clang-format --dry-run -Werror $files $(git ls-files 'tests/*.c' 'tests/*.h' 2>/dev/null) || rc=1
fi
[ $rc -eq 0 ] && echo "lint: clean" >&2
exit $rc
