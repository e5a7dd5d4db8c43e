#!/usr/bin/env bash
# test_sandbox.sh - group X of shared/RELIABILITY.md (3.9) against the real
# binary. Cases that need root skip with a reason when not root; most cases
# run twice: as root and as an unprivileged user (setpriv to 65534), where
# the cgroup rows fall back to rlimits (no delegated cgroup for nobody here).
# The helper sbx-try (test_sandbox_try.c) does one operation and prints the
# errno name. Every command has a timeout; the fork bomb and memory cases set
# --pids/--memory and a wall limit first.
. "$(dirname "$0")/lib.sh"

SRC=$(cd "$(dirname "$0")" && pwd)
chmod 755 "$T_TMP"
P=$T_TMP/proj
mkdir -p "$P"
echo "project file" > "$P/readme.txt"
chmod 666 "$P/readme.txt"   # writable by anyone: only the read-only mount stops writes
cc -O2 -pthread "$SRC/test_sandbox_try.c" -o "$P/sbx-try" || { echo "cannot build sbx-try"; exit 1; }
chmod -R a+rX "$P"
echo "host secret" > "$T_TMP/secret.key"
IS_ROOT=0; [ "$(id -u)" = 0 ] && IS_ROOT=1

need_root() { [ $IS_ROOT = 1 ] || skip "needs root (unprivileged run via setpriv)"; }
nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
# sbx [slm options] -- CMD... : the sandbox with a 30 s wall limit
sbx() { "$SLM" sandbox --timeout 30 "$@"; }
# user MODE CMD...: run CMD as root (MODE=root) or as nobody (MODE=nobody)
user() { local m=$1; shift; if [ "$m" = root ]; then need_root; "$@"; else need_root; nobody "$@"; fi; }
# expect MODE ERRNO OP ARGS...: sbx-try OP prints ERRNO inside the sandbox
expect() {
  local m=$1 want=$2 got; shift 2
  got=$(user "$m" "$SLM" sandbox --timeout 30 "$P" -- /workspace/sbx-try "$@" 2>/dev/null | tail -n 1)
  [ "$got" = "$want" ] || fail "$m: sbx-try $*: expected $want, got '$got'"
}
json_field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d[sys.argv[1]])' "$1"; }
cg_leftovers() { find /sys/fs/cgroup -maxdepth 4 -name 'slm-sandbox-*' 2>/dev/null | wc -l; }

# ---- usage and set-up errors ----

t_usage() {
  "$SLM" sandbox --help | grep -q 'PROJECT_DIR -- CMD' || fail "help"
  "$SLM" sandbox 2>/dev/null; [ $? = 2 ] || fail "no args must exit 2"
  "$SLM" sandbox --net moon "$P" -- true 2>/dev/null; [ $? = 2 ] || fail "bad --net must exit 2"
  "$SLM" sandbox --memory 1Q "$P" -- true 2>/dev/null; [ $? = 2 ] || fail "bad --memory must exit 2"
  "$SLM" sandbox "$P" 2>/dev/null; [ $? = 2 ] || fail "missing command must exit 2"
}
t_missing_project() {
  out=$("$SLM" sandbox "$T_TMP/nope" -- true 2>&1); rc=$?
  [ $rc = 1 ] || fail "rc $rc"
  echo "$out" | grep -q "project directory '$T_TMP/nope': No such file or directory; pass an existing directory" || fail "$out"
}
t_missing_command() {
  out=$(sbx "$P" -- /no/such/prog 2>&1); rc=$?
  [ $rc = 127 ] || fail "rc $rc: $out"
  echo "$out" | grep -q "cannot run '/no/such/prog': No such file or directory" || fail "$out"
}
t_no_userns() {
  # user.max_user_namespaces is per user namespace: 0 inside a throw-away one.
  out=$(unshare -U -r sh -c 'echo 0 > /proc/sys/user/max_user_namespaces && "$0" sandbox --cgroup none "$1" -- true' "$SLM" "$P" 2>&1); rc=$?
  [ $rc = 4 ] || fail "rc $rc: $out"
  echo "$out" | grep -q "no user namespaces available: user.max_user_namespaces is 0" || fail "$out"
}
t_cgroup_refused() {
  need_root
  before=$(cg_leftovers)
  out=$(nobody "$SLM" sandbox --cgroup v1 "$P" -- true 2>&1); rc=$?
  [ $rc = 4 ] || fail "rc $rc: $out"
  echo "$out" | grep -q "cannot create cgroup .*Permission denied; run as root, or inside a delegated cgroup" || fail "$out"
  echo "$out" | grep -q -- "--cgroup none" || fail "no way around named: $out"
  [ "$(cg_leftovers)" = "$before" ] || fail "cgroup left behind"
}
t_workdir_missing() {
  out=$(sbx --workdir nope "$P" -- true 2>&1); rc=$?
  [ $rc = 1 ] || fail "rc $rc"
  echo "$out" | grep -q "work directory /workspace/nope: No such file or directory" || fail "$out"
}

# ---- X01 network ----

x01() {
  local m=$1 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  python3 -c 'import socket,sys,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
u=socket.socket(socket.AF_UNIX); u.bind("\0slm-sbx-test"); u.listen(); time.sleep(20)' "$port" &
  local srv=$!
  sleep 0.3
  expect "$m" ECONNREFUSED tcp 127.0.0.1 "$port"
  expect "$m" ECONNREFUSED abstract slm-sbx-test
  expect "$m" ENETUNREACH tcp 1.1.1.1 80
  expect "$m" ENETUNREACH udp 8.8.8.8
  for op in netlink netlink-hi packet raw vsock; do expect "$m" EPERM $op; done
  out=$(user "$m" "$SLM" sandbox "$P" -- cat /proc/net/dev)
  [ "$(echo "$out" | grep -c ':')" = 1 ] && echo "$out" | grep -q ' lo:' || fail "interfaces: $out"
  kill $srv 2>/dev/null; wait $srv 2>/dev/null
  return 0
}
x01_host_net() {
  need_root
  out=$(sbx --net host "$P" -- cat /proc/net/dev) || fail "--net host failed"
  [ "$(echo "$out" | grep -c ':')" = "$(grep -c ':' /proc/net/dev)" ] || fail "--net host does not show the host's interfaces"
}

# ---- X02 file system ----

x02() {
  local m=$1
  expect "$m" EROFS write /workspace/new
  expect "$m" EROFS write /workspace/readme.txt
  expect "$m" EROFS write /newfile
  expect "$m" EROFS write /etc/passwd
  expect "$m" EROFS write /usr/bin/evil
  expect "$m" ENOENT read /etc/shadow
  expect "$m" ENOENT read /root
  expect "$m" ENOENT read "$T_TMP/secret.key"
  expect "$m" ENOENT read /work
  expect "$m" EACCES write /proc/sys/kernel/hostname
  for op in mount umount pivot_root chroot open_by_handle_at; do expect "$m" EPERM $op; done
  expect "$m" EPERM mknod /tmp/null2
  expect "$m" OK write /tmp/ok
  expect "$m" OK write /output/ok
  expect "$m" OK write /home/sandbox/ok
  devs=$(user "$m" "$SLM" sandbox "$P" -- sh -c 'for f in /dev/* /dev/shm/*; do if [ ! -L "$f" ] && { [ -c "$f" ] || [ -b "$f" ]; }; then printf "%s " "$f"; fi; done')
  [ "$devs" = "/dev/full /dev/null /dev/random /dev/urandom /dev/zero " ] || fail "devices: $devs"
  top=$(user "$m" "$SLM" sandbox "$P" -- sh -c 'ls / | tr "\n" " "')
  [ "$top" = "bin dev etc home lib lib32 lib64 output proc sbin tmp usr workspace " ] || fail "root: $top"
  same=$(user "$m" "$SLM" sandbox "$P" -- sh -c '[ "$(stat -L -c %d:%i /proc/self/root)" = "$(stat -c %d:%i /)" ] && echo same')
  [ "$same" = same ] || fail "/proc/self/root is not the sandbox root"
  user "$m" "$SLM" sandbox "$P" -- cat readme.txt | grep -q "project file" || fail "project not readable"
}
x02_rw() {
  need_root
  mkdir -p "$T_TMP/rw"; chmod 777 "$T_TMP/rw"
  sbx --rw "$T_TMP/rw" -- sh -c 'echo written > /workspace/f' || fail "--rw write failed"
  [ "$(cat "$T_TMP/rw/f")" = written ] || fail "file not on the host"
}

# ---- X03 collecting /output ----

x03() {
  local m=$1 out=$T_TMP/out-$1
  mkdir -p "$out"; chmod 777 "$out"
  echo "victim" > "$T_TMP/victim-$m"; chmod 666 "$T_TMP/victim-$m"
  ln -sf "$T_TMP/victim-$m" "$out/ok.txt"            # pre-existing link on the host side
  user "$m" "$SLM" sandbox --timeout 30 --output "$out" --output-files 40 "$P" -- sh -c '
    cd /output && echo fine > ok.txt && mkdir -p sub && echo deep > sub/f &&
    ln -s /etc/passwd passwd && ln -s loop loop && mkfifo fifo && truncate -s 10G sparse &&
    ln -s / rootlink && i=0 && while [ $i -lt 60 ]; do (: > n$i) 2>/dev/null; i=$((i+1)); done; true' 2>/dev/null
  [ -f "$out/ok.txt" ] && [ ! -L "$out/ok.txt" ] || fail "ok.txt not a regular file"
  [ "$(cat "$out/ok.txt")" = fine ] || fail "ok.txt content"
  [ "$(cat "$T_TMP/victim-$m")" = victim ] || fail "wrote through the host-side symlink"
  [ "$(cat "$out/sub/f")" = deep ] || fail "subdirectory"
  for f in passwd loop fifo sparse rootlink; do [ ! -e "$out/$f" ] && [ ! -L "$out/$f" ] || fail "$f copied"; done
  n=$(find "$out" -type f | wc -l)
  [ "$n" -le 40 ] || fail "file quota: $n files"
}

# ---- X04 processes ----

x04() {
  local m=$1
  sleep 30 & local sl=$!
  pids=$(user "$m" "$SLM" sandbox "$P" -- sh -c 'ls /proc | grep -E "^[0-9]+$" | tr "\n" " "')
  [ "$(echo $pids | wc -w)" -le 6 ] || fail "too many pids visible: $pids"
  echo " $pids" | grep -q ' 1 ' || fail "no pid 1: $pids"
  user "$m" "$SLM" sandbox "$P" -- sh -c '/workspace/sbx-try kill-all; true' >/dev/null
  kill -0 $sl || fail "host sleeper died"
  kill $sl
  expect "$m" EPERM ptrace
  expect "$m" EPERM ptrace-thread
}

# ---- X05 memory ----

x05_root() {
  need_root
  j=$(sbx --json --memory 1G "$P" -- /workspace/sbx-try alloc 2048)
  [ "$(echo "$j" | json_field status)" = oom ] || fail "status: $j"
  [ "$(echo "$j" | json_field oom)" = True ] || fail "oom flag: $j"
  [ "$(echo "$j" | json_field limits)" = cgroup-v1 ] || [ "$(echo "$j" | json_field limits)" = cgroup-v2 ] || fail "backend: $j"
  [ "$(cg_leftovers)" = 0 ] || fail "cgroup left behind"
}
x05_nobody() {
  need_root
  j=$(nobody "$SLM" sandbox --timeout 30 --json --memory 1G "$P" -- /workspace/sbx-try alloc 2048)
  [ "$(echo "$j" | json_field limits)" = rlimit ] || fail "backend: $j"
  echo "$j" | json_field stdout | grep -q ENOMEM || fail "no ENOMEM: $j"
}

# ---- X06 fork bomb ----

x06() {
  local m=$1 left bomb='slm-x06-bomb|sbx-try forkbomb|sleep 4731'
  # Every process of the bomb carries a mark in its command line (the sh's
  # $0, the helper's argument); none may outlive the sandbox. (A count of all
  # of /proc would also see the scripts run.sh runs next to this one.)
  j=$(user "$m" "$SLM" sandbox --json --pids 64 --timeout 10 "$P" -- sh -c '/workspace/sbx-try forkbomb; f(){ f | f & }; f; sleep 4731' slm-x06-bomb)
  case "$(echo "$j" | json_field status)" in exited|timeout) ;; *) fail "status: $j";; esac
  n=$(echo "$j" | json_field stdout | sed -n 's/forked //p')
  [ -n "$n" ] && [ "$n" -lt 64 ] || fail "forked $n"
  for i in 1 2 3 4 5 6 7 8 9 10; do
    left=$(pgrep -fc "$bomb"); [ "$left" = 0 ] && break; sleep 0.2
  done
  [ "$left" = 0 ] || fail "$left processes of the bomb left: $(pgrep -af "$bomb" | head -n 5)"
}

# ---- X07 timeout kills the whole tree ----

x07() {
  local m=$1 t0 t1
  t0=$(date +%s%N)
  j=$(user "$m" "$SLM" sandbox --json --timeout 2 "$P" -- sh -c 'sleep 4711 & (setsid sh -c "sleep 4712" &); (sh -c "sleep 4713 &" &); while :; do :; done')
  t1=$(date +%s%N)
  [ "$(echo "$j" | json_field status)" = timeout ] || fail "status: $j"
  ms=$(( (t1 - t0) / 1000000 ))
  [ $ms -ge 1800 ] && [ $ms -le 2600 ] || fail "wall $ms ms for a 2 s limit"
  sleep 0.3
  ! pgrep -f 'sleep 471[123]' >/dev/null || fail "left: $(pgrep -af 'sleep 471')"
}

# ---- X08 fill the disk ----

x08() {
  local m=$1
  out=$(user "$m" "$SLM" sandbox --tmp-size 8M --output-size 4M "$P" -- sh -c '
    dd if=/dev/zero of=/tmp/f bs=1M count=20 2>&1 | grep -c "No space"; dd if=/dev/zero of=/output/f bs=1M count=20 2>&1 | grep -c "No space"; du -k /tmp/f /output/f')
  [ "$(echo "$out" | sed -n 1p)" = 1 ] && [ "$(echo "$out" | sed -n 2p)" = 1 ] || fail "no ENOSPC: $out"
  out=$(user "$m" "$SLM" sandbox --output-files 10 "$P" -- sh -c 'i=0; while [ $i -lt 20 ]; do : > /output/f$i || exit 3; i=$((i+1)); done' 2>&1)
  echo "$out" | grep -q "No space left" || fail "inode quota: $out"
}

# ---- X09 privileges ----

x09() {
  local m=$1
  st=$(user "$m" "$SLM" sandbox "$P" -- grep -E '^(NoNewPrivs|Seccomp|CapInh|CapPrm|CapEff|CapBnd|CapAmb):' /proc/self/status | tr -s '\t ' ' ' | tr '\n' ';')
  [ "$st" = "CapInh: 0000000000000000;CapPrm: 0000000000000000;CapEff: 0000000000000000;CapBnd: 0000000000000000;CapAmb: 0000000000000000;NoNewPrivs: 1;Seccomp: 2;" ] || fail "status: $st"
  expect "$m" EPERM unshare-user
  expect "$m" EPERM clone-newuser
}
x09_setuid() {
  need_root
  cp /usr/bin/id "$P/suid-id"; chown root:root "$P/suid-id"; chmod 4755 "$P/suid-id"
  for m in root nobody; do
    out=$(user $m "$SLM" sandbox "$P" -- /workspace/suid-id -u)
    [ "$out" != 0 ] && [ -n "$out" ] || fail "$m: setuid gave uid '$out'"
  done
  out=$(sbx "$P" -- su -c id root </dev/null 2>&1); [ $? != 0 ] || fail "su succeeded: $out"
  rm -f "$P/suid-id"
}

# ---- X10 seccomp table ----

x10() {
  local m=$1
  for op in io_uring_setup bpf perf_event_open userfaultfd keyctl add_key request_key kexec_load \
            init_module finit_module swapon reboot setns unshare-net process_vm_readv \
            process_vm_writev personality tiocsti tiocsti-hi mount pivot_root; do
    expect "$m" EPERM $op
  done
  expect "$m" ENOSYS clone3
  expect "$m" OK personality-query
  expect "$m" OK getpid
  for op in int80 x32; do
    user "$m" "$SLM" sandbox "$P" -- /workspace/sbx-try $op >/dev/null 2>&1; rc=$?
    [ $rc = 159 ] || fail "$op: exit $rc, want 159 (SIGSYS)"
  done
}

# ---- X11 file descriptors ----

x11() {
  local m=$1
  out=$(exec 7</etc/hostname 8<"$T_TMP"; user "$m" "$SLM" sandbox "$P" -- /workspace/sbx-try fds)
  [ "$(echo "$out" | wc -l)" = 3 ] || fail "fds: $out"
  echo "$out" | grep -q '^0 /dev/null$' || fail "stdin: $out"
  ! echo "$out" | grep -q "$T_TMP" || fail "host dir leaked: $out"
}

# ---- X12 environment ----

x12() {
  local m=$1
  names=$(OPENAI_API_KEY=sk-secret SLM_PROVIDER_KEY=x http_proxy=http://p:1 HTTPS_PROXY=x TERM=dumb \
    user "$m" "$SLM" sandbox --setenv FOO=bar "$P" -- sh -c 'cat /proc/self/environ | tr "\0" "\n" | cut -d= -f1 | sort | tr "\n" " "')
  [ "$names" = "FOO HOME LANG LOGNAME PATH PWD SHELL TERM TMPDIR USER " ] || fail "env: $names"
  out=$(OPENAI_API_KEY=sk-secret user "$m" "$SLM" sandbox "$P" -- cat /proc/1/environ /proc/self/environ 2>&1)
  ! echo "$out" | grep -q sk-secret || fail "secret visible"
}

# ---- X13 terminal ----

x13() {
  local m=$1
  out=$(user "$m" "$SLM" sandbox "$P" -- sh -c 'ps -o sid=,tty= -p $$ 2>/dev/null || cat /proc/self/stat')
  # sid is the sandbox's (small) pid and there is no controlling tty
  echo "$out" | grep -qE '^ *[0-9]+ +\?' || echo "$out" | awk '{exit !($7 == 0)}' || fail "tty: $out"
  command -v script >/dev/null || skip "script(1) not installed"
  out=$(user "$m" script -qec "$SLM sandbox --stdin $P -- /workspace/sbx-try tiocsti" /dev/null </dev/null | tr -d '\r')
  echo "$out" | grep -q EPERM || fail "TIOCSTI on the host pty: $out"
}

# ---- X14 UTS ----

x14() {
  local m=$1 h
  h=$(hostname)
  [ "$(user "$m" "$SLM" sandbox "$P" -- hostname)" = sandbox ] || fail "hostname"
  expect "$m" EPERM sethostname
  [ "$(hostname)" = "$h" ] || fail "host name changed"
}

# ---- X15 repeated and concurrent runs ----

x15() {
  need_root
  local mi before_fd
  mi=$(sed 's/^[0-9]* [0-9]* //' /proc/self/mountinfo | md5sum)
  for i in $(seq 1 100); do sbx "$P" -- true || fail "run $i"; done
  pids=()
  for i in $(seq 1 20); do sbx "$P" -- sh -c 'echo $$' >/dev/null & pids+=($!); done
  for p in "${pids[@]}"; do wait $p || fail "concurrent run failed"; done
  [ "$(sed 's/^[0-9]* [0-9]* //' /proc/self/mountinfo | md5sum)" = "$mi" ] || fail "host mount table changed"
  [ "$(cg_leftovers)" = 0 ] || fail "cgroups left"
  ! ps -eo stat= | grep -q '^Z' || true
  [ -z "$(ls /tmp | grep -i slm-sandbox)" ] || fail "temp dirs left"
}

# ---- X16 supervisor robustness ----

x16() {
  local m=$1
  j=$(user "$m" "$SLM" sandbox --json --max-output 1M --timeout 60 "$P" -- head -c 1G /dev/zero)
  [ "$(echo "$j" | json_field stdout_truncated)" = True ] || fail "not truncated"
  [ "$(echo "$j" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["stdout"]))')" = 1048576 ] || fail "kept bytes"
  j=$(user "$m" "$SLM" sandbox --json "$P" -- sh -c 'exec 1>&-; echo still >&2')
  [ "$(echo "$j" | json_field stderr)" = still ] || fail "closed stdout: $j"
  j=$(user "$m" "$SLM" sandbox --json --timeout 1 "$P" -- sh -c 'kill -STOP $$')
  [ "$(echo "$j" | json_field status)" = timeout ] || fail "stopped child: $j"
  user "$m" "$SLM" sandbox --timeout 60 "$P" -- sh -c 'sleep 4721 & sleep 4722' &
  local sup=$!
  sleep 0.5
  pgrep -f 'sleep 4722' >/dev/null || fail "sandbox did not start"
  pkill -KILL -P $sup 2>/dev/null; kill -KILL $sup 2>/dev/null; wait $sup 2>/dev/null
  for i in 1 2 3 4 5 6 7 8 9 10; do pgrep -f 'sleep 472[12]' >/dev/null || break; sleep 0.2; done
  ! pgrep -f 'sleep 472[12]' >/dev/null || fail "orphans after supervisor SIGKILL"
}

# ---- X17 escape corpus ----

x17() {
  local m=$1
  expect "$m" EPERM open_by_handle_at   # "shocker"
  expect "$m" EPERM tiocsti             # CVE-2017-5226
  out=$(user "$m" "$SLM" sandbox "$P" -- /workspace/sbx-try exe-write)
  [ "$out" = EACCES ] || [ "$out" = ETXTBSY ] || [ "$out" = EROFS ] || fail "/proc/self/exe: $out"
  expect "$m" EPERM unshare-user        # nested userns kernel surface
  x03 "$m"                              # symlink planted on the host side of the output
}

t_json_and_tool() {
  j=$(sbx --json "$P" -- sh -c 'echo out; echo err >&2; exit 3')
  [ "$(echo "$j" | json_field status)" = exited ] && [ "$(echo "$j" | json_field exit_code)" = 3 ] || fail "$j"
  [ "$(echo "$j" | json_field stdout)" = out ] && [ "$(echo "$j" | json_field stderr)" = err ] || fail "$j"
  j=$(sbx --json --shell 'kill -SEGV $$' "$P")
  [ "$(echo "$j" | json_field status)" = signaled ] && [ "$(echo "$j" | json_field signal)" = 11 ] || fail "$j"
  j=$(sbx --json --workdir sub --shell 'pwd' "$T_TMP" 2>&1)
  echo "$j" | grep -q "work directory" || fail "workdir: $j"
  diff <("$SLM" sandbox --print-tool) "$SRC/../../docs/tools/run_command.json" || fail "docs/tools/run_command.json differs from --print-tool"
  "$SLM" sandbox --print-tool | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["function"]["name"]=="run_command"; assert set(d["function"]["parameters"]["properties"])=={"command","workdir","timeout"}'
}

# t_run starts a fresh bash: hand it the functions and variables.
export -f $(declare -F | awk '{print $3}')
export P SRC IS_ROOT T_TMP SLM

t_run "usage errors exit 2" t_usage
t_run "missing project directory is explained" t_missing_project
t_run "missing command exits 127 with a message" t_missing_command
t_run "no user namespaces is explained" t_no_userns
t_run "a cgroup that cannot be created is explained, nothing left" t_cgroup_refused
t_run "missing work directory is explained" t_workdir_missing
t_run "json result and tool definition" t_json_and_tool
for m in root nobody; do
  t_run "X01 network ($m)" x01 $m
  t_run "X02 file system ($m)" x02 $m
  t_run "X03 output collection ($m)" x03 $m
  t_run "X04 processes ($m)" x04 $m
  t_run "X06 fork bomb ($m)" x06 $m
  t_run "X07 timeout kills the tree ($m)" x07 $m
  t_run "X08 fill disk ($m)" x08 $m
  t_run "X09 privileges ($m)" x09 $m
  t_run "X10 seccomp table ($m)" x10 $m
  t_run "X11 file descriptors ($m)" x11 $m
  t_run "X12 environment ($m)" x12 $m
  t_run "X13 terminal ($m)" x13 $m
  t_run "X14 uts ($m)" x14 $m
  t_run "X16 supervisor robustness ($m)" x16 $m
  t_run "X17 escape corpus ($m)" x17 $m
done
t_run "X01 --net host shows the host network" x01_host_net
t_run "X02 --rw writes the project" x02_rw
t_run "X05 memory limit (root, cgroup)" x05_root
t_run "X05 memory limit (nobody, rlimit)" x05_nobody
t_run "X09 setuid binaries give nothing" x09_setuid
t_run "X15 repeated and concurrent runs leave nothing" x15
t_end
