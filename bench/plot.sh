#!/usr/bin/env bash
# Draws tokens/s of slm and llama.cpp per model and type, prompt processing
# above and generation below (with the memory-bandwidth bound as a dashed
# line over each pair of generation bars), from the joined rows bench/run.sh
# leaves in build/bench/results.json. Needs gnuplot (Debian: gnuplot-nox).
#
# usage: bench/plot.sh [RESULTS.json [OUT.png]]
#   defaults: build/bench/results.json and bench/results.png
#   PLOT_THREADS=N   rows at N threads (default: the most threads in the file)
# Only depth-0 rows are drawn, and of the prompt tests the shortest (pp512 in
# the default run; pp4096 of BENCH_LONG stays in the table).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
in=${1:-build/bench/results.json}
out=${2:-bench/results.png}
[ -f "$in" ] || { echo "plot: no $in (run bench/run.sh first)" >&2; exit 1; }
command -v gnuplot >/dev/null 2>&1 || { echo "plot: gnuplot is missing (apt-get install gnuplot-nox)" >&2; exit 1; }
threads=${PLOT_THREADS:-$(jq '[.[].n_threads] | max // 0' "$in")}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One line per model/type: index, model, type, slm, slm sd, llama, llama sd, bound.
select_rows() {
  jq -r --argjson t "$threads" --arg kind "$1" '
    def n: if . == null then "NaN" else tostring end;
    [.[] | select(.n_threads == $t and .n_depth == 0)
         | select(if $kind == "pp" then .n_prompt > 0 else .n_prompt == 0 end)] as $r
    | ([$r[] | .n_prompt] | min) as $pmin
    | [$r[] | select($kind == "tg" or .n_prompt == $pmin)]
    | to_entries[]
    | "\(.key) \"\(.value.model)\" \"\(.value.type)\" \(.value.slm_ts | n) \(.value.slm_sd | n) \(.value.llama_ts | n) \(.value.llama_sd | n) \(.value.bound_ts | n) \"\(.value.test)\""
  ' "$in"
}
select_rows pp > "$tmp/pp.dat"
select_rows tg > "$tmp/tg.dat"
n_pp=$(wc -l < "$tmp/pp.dat")
n_tg=$(wc -l < "$tmp/tg.dat")
if [ "$n_pp" -eq 0 ] && [ "$n_tg" -eq 0 ]; then
  echo "plot: no depth-0 rows at $threads threads in $in" >&2
  exit 1
fi
pp_test=$(awk -F'"' 'NR == 1 { print $(NF-1) }' "$tmp/pp.dat")
tg_test=$(awk -F'"' 'NR == 1 { print $(NF-1) }' "$tmp/tg.dat")
run_date=$(date -u -r "$in" +%Y-%m-%d)

panel() {
  local dat=$1 title=$2 bound=$3
  cat <<EOF
set title "$title"
set xrange [-0.6:$(($(wc -l < "$dat") - 1)).6]
plot "$dat" using (\$1-0.2):4:(0.4):xtic(strcol(3)."\n".strcol(2)) with boxes fs solid 0.85 lc rgb "#1f77b4" title "slm", \\
     "$dat" using (\$1-0.2):(\$4-\$5):(0):(2*\$5) with vectors nohead lc rgb "black" notitle, \\
     "$dat" using (\$1-0.2):4:(sprintf("%.0f", \$4)) with labels offset 0,0.7 font ",8" notitle, \\
     "$dat" using (\$1+0.2):6:(0.4) with boxes fs solid 0.85 lc rgb "#ff7f0e" title "llama.cpp", \\
     "$dat" using (\$1+0.2):(\$6-\$7):(0):(2*\$7) with vectors nohead lc rgb "black" notitle, \\
     "$dat" using (\$1+0.2):6:(sprintf("%.0f", \$6)) with labels offset 0,0.7 font ",8" notitle$(
  [ "$bound" = 1 ] && printf '%s' ", \\
     \"$dat\" using (\$1-0.45):8:(0.9):(0) with vectors nohead dt 2 lw 2 lc rgb \"#2ca02c\" title \"bandwidth bound\"")
EOF
}

{
  echo 'set terminal pngcairo size 1100,760 font "sans,10"'
  echo "set output \"$out\""
  echo 'set style fill solid border -1'
  echo 'set boxwidth 0.4'
  echo 'set grid ytics'
  echo 'set ylabel "tokens/s"'
  echo 'set yrange [0:*]'
  echo 'set termoption noenhanced'
  echo 'set key top left horizontal'
  echo 'set offsets 0, 0, graph 0.15, 0'
  echo 'set xtics scale 0'
  echo 'set tmargin 2.5'
  echo 'set bmargin 3.5'
  panels=0
  [ "$n_pp" -gt 0 ] && panels=$((panels + 1))
  [ "$n_tg" -gt 0 ] && panels=$((panels + 1))
  echo "set multiplot layout $panels,1 title \"slm vs llama.cpp, $threads threads, same GGUF files ($run_date)\" font \",12\""
  [ "$n_pp" -gt 0 ] && panel "$tmp/pp.dat" "prompt processing ($pp_test)" 0
  [ "$n_tg" -gt 0 ] && panel "$tmp/tg.dat" "generation ($tg_test); dashed: memory-bandwidth bound" 1
  echo 'unset multiplot'
} > "$tmp/plot.gp"
gnuplot "$tmp/plot.gp"
echo "plot: wrote $out" >&2
