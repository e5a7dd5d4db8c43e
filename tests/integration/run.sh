#!/usr/bin/env bash
# Runs every tests/integration/test_*.sh and prints the summed summary line.
#
# T_INTEG_JOBS scripts run at a time (default 1). Each script's output is
# captured and printed in one piece when it ends, headed by its name and wall
# time; the longest scripts (by the times of the last run of this variant in
# build/integ-times-VARIANT.txt, else the list below) start first.
set -u
dir=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$dir/../.." && pwd)
jobs=${T_INTEG_JOBS:-1}
[[ $jobs =~ ^[1-9][0-9]*$ ]] || jobs=1
variant=${SLM_VARIANT:-rel}
times_file=$root/build/integ-times-$variant.txt
out_dir=$(mktemp -d "${TMPDIR:-/tmp}/slm-integ-run-XXXXXX")
trap 'rm -rf "$out_dir"' EXIT
# The scripts run as separate processes: the unit harness's parallelism is
# not theirs (test_cpu.sh runs the unit tests itself).
unset T_JOBS

# Slowest first when there is no record yet (a fresh clone).
slow_first=(test_sandbox.sh test_cpu.sh test_serve.sh test_quantize.sh test_serve_chat.sh
            test_serve_ops.sh test_tokenizer_reference.sh test_templates_jinja2.sh)
declare -A est=()
for i in "${!slow_first[@]}"; do est[${slow_first[$i]}]=$((1000 - i)); done
if [ -s "$times_file" ]; then
  while read -r s name; do [[ $s =~ ^[0-9]+$ ]] && est[$name]=$s; done <"$times_file"
fi
scripts=()
for t in "$dir"/test_*.sh; do [ -f "$t" ] && scripts+=("$(basename "$t")"); done
mapfile -t scripts < <(for s in "${scripts[@]}"; do echo "${est[$s]:-0} $s"; done | sort -k1,1nr -k2,2 | awk '{print $2}')

p=0 f=0 s=0
declare -A pid_of=() start_of=()
times=()

# finish NAME RC: prints the script's captured output and adds its summary.
finish() {
  local t=$1 rc=$2 out last secs
  out=$out_dir/$t.out
  secs=$(( ($(date +%s%N) - ${start_of[$t]}) / 1000000 ))
  times+=("$(( (secs + 999) / 1000 )) $t")
  printf '# %s (%d.%d s)\n' "$t" $((secs / 1000)) $((secs % 1000 / 100))
  sed '$d' "$out"
  last=$(tail -n 1 "$out")
  if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
    p=$((p + BASH_REMATCH[1])); f=$((f + BASH_REMATCH[2])); s=$((s + ${BASH_REMATCH[4]:-0}))
    [ "$rc" -eq 0 ] || [ "${BASH_REMATCH[2]}" -gt 0 ] || { f=$((f + 1)); echo "not ok - $t exited $rc"; }
  else
    printf '%s\n' "$last"
    f=$((f + 1)); echo "not ok - $t ended without a summary (exit $rc)"
  fi
}

# Each script reports "EXIT_STATUS NAME" on this FIFO when it ends.
mkfifo "$out_dir/done" && exec 3<>"$out_dir/done" || { echo "run.sh: mkfifo failed"; exit 1; }
running=0
# reap: waits for one script to end and prints it.
reap() {
  local rc t
  read -r rc t <&3 || { echo "run.sh: lost track of the scripts"; exit 1; }
  wait "${pid_of[$t]}" 2>/dev/null
  unset "pid_of[$t]"
  finish "$t" "$rc"
  running=$((running - 1))
}
for t in "${scripts[@]}"; do
  while [ "$running" -ge "$jobs" ]; do reap; done
  start_of[$t]=$(date +%s%N)
  ( exec 3>&-
    bash "$dir/$t" >"$out_dir/$t.out" 2>&1 </dev/null
    echo "$? $t" >"$out_dir/done" ) &
  pid_of[$t]=$!
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do reap; done
exec 3>&-

mkdir -p "$(dirname "$times_file")" && printf '%s\n' "${times[@]}" | sort -k1,1nr >"$times_file"
if [ $s -gt 0 ]; then echo "$p passed, $f failed, $s skipped"; else echo "$p passed, $f failed"; fi
[ $f -eq 0 ]
