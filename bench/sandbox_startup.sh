#!/usr/bin/env bash
# sandbox_startup.sh - start-up overhead of `slm sandbox -- true` against
# bubblewrap and against a plain fork+exec of /bin/true. Not a timed test:
# run it by hand on a quiet machine and paste the table into bench/RESULTS.md.
#
#   bench/sandbox_startup.sh [SLM_BINARY] [RUNS]
#
# Each configuration runs RUNS times back to back; the script prints the
# mean and the median wall time per run in milliseconds. bwrap is given the
# closest equivalent of our default set-up (new user/mount/pid/net/ipc/uts
# namespaces, read-only /usr and friends, tmpfs /tmp, fresh /proc and /dev,
# a read-only project bind). slm runs once with --cgroup none (namespaces,
# mounts and seccomp only, the same work bwrap does) and once with its
# default cgroup back-end (as root on a cgroup v1/v2 host).
set -u
SLM=${1:-build/rel/slm}
RUNS=${2:-200}
proj=$(mktemp -d "${TMPDIR:-/tmp}/slm-bench-XXXXXX")
trap 'rm -rf "$proj"' EXIT
chmod 755 "$proj"

# time_runs LABEL CMD...: runs CMD $RUNS times, prints mean and median ms.
time_runs() {
  local label=$1 i t0 t1
  shift
  local times=()
  "$@" >/dev/null 2>&1 || { printf '%-34s failed: %s\n' "$label" "$*"; return; }
  for ((i = 0; i < RUNS; i++)); do
    t0=$(date +%s%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s%N)
    times+=($(( (t1 - t0) / 1000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v label="$label" '
    { v[NR] = $1; s += $1 }
    END { printf "%-34s mean %7.2f ms   median %7.2f ms   (n=%d)\n", label, s / NR / 1000, v[int((NR + 1) / 2)] / 1000, NR }'
}

bwrap_args=(--unshare-user --unshare-pid --unshare-net --unshare-ipc --unshare-uts
            --unshare-cgroup-try --die-with-parent --new-session
            --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/sbin /sbin
            --symlink usr/lib /lib --symlink usr/lib64 /lib64
            --ro-bind /etc/ld.so.cache /etc/ld.so.cache
            --ro-bind "$proj" /workspace --tmpfs /tmp --proc /proc --dev /dev
            --chdir /workspace)

echo "# sandbox start-up, $RUNS runs each, $(nproc) CPUs, kernel $(uname -r), uid $(id -u)"
time_runs "fork+exec /bin/true" /bin/true
if command -v bwrap >/dev/null; then
  time_runs "bwrap $(bwrap --version | cut -d' ' -f2) -- true" bwrap "${bwrap_args[@]}" true
else
  echo "bwrap not installed: skipped"
fi
time_runs "slm sandbox --cgroup none -- true" "$SLM" sandbox --cgroup none "$proj" -- true
time_runs "slm sandbox -- true (cgroups)" "$SLM" sandbox "$proj" -- true
