/*
 * sandbox.h - run one command in an isolated, limited sandbox.
 *
 * sandbox_run() starts the command in fresh user, mount, pid, network, ipc,
 * uts and cgroup namespaces, on a new root (pivot_root) that holds only the
 * host's /usr, /bin, /lib* and a few /etc files read-only, the project at
 * /workspace (read-only unless project_rw), a size-capped tmpfs at /tmp,
 * $HOME (/home/sandbox) and /output, a minimal /dev and a fresh /proc. The
 * command runs with no_new_privs, no capabilities, in a new session, with an
 * allow-listed environment, only fds 0-2, under a seccomp filter, inside a
 * cgroup (v2, or v1 where the memory and pids controllers live there) with
 * rlimits as a floor. A wall-clock timeout kills the whole pid namespace.
 * After the command ends the files it left in /output are copied to
 * output_dir without following any symbolic link.
 *
 * There is no daemon: the caller is the supervisor. docs/sandbox.md describes
 * the layout, the seccomp table and the comparison with bubblewrap.
 *
 * Threading: sandbox_run() forks; call it from a process that has started no
 * threads yet (a CLI, or a helper forked before the server starts threads).
 * Everything else here is reentrant.
 *
 * Ownership: params are borrowed for the call; a result's buffers belong to
 * the result until sandbox_result_fini().
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

enum sandbox_net {
    SANDBOX_NET_NONE, /* a private network namespace with only lo (default) */
    SANDBOX_NET_HOST, /* the host's network namespace */
    SANDBOX_NET_COUNT
};

enum sandbox_cgroup {
    SANDBOX_CGROUP_AUTO, /* v2 if it has the controllers, else v1, else rlimits (warned) */
    SANDBOX_CGROUP_V2,
    SANDBOX_CGROUP_V1,
    SANDBOX_CGROUP_NONE, /* rlimits only */
    SANDBOX_CGROUP_COUNT
};

/* A parameter bundle: fill it with sandbox_params_default() first. */
struct sandbox_params {
    const char *project_dir; /* host directory shown at /workspace (required) */
    bool project_rw;         /* mount it read-write */
    const char *output_dir;  /* host directory that receives /output, or NULL */
    enum sandbox_net net;
    enum sandbox_cgroup cgroup;
    uint64_t memory_bytes; /* 0: no memory limit */
    uint64_t pids_max;     /* 0: no pids limit */
    double cpus;           /* CPU quota in CPUs; 0: none */
    uint64_t timeout_ms;   /* wall clock; 0: none */
    size_t stdout_max;     /* bytes kept of each stream */
    size_t stderr_max;
    uint64_t tmp_bytes; /* tmpfs sizes */
    uint64_t home_bytes;
    uint64_t output_bytes;  /* /output tmpfs size and copy-out byte quota */
    uint64_t output_files;  /* /output inode cap and copy-out file quota */
    const char *workdir;    /* directory inside the sandbox; NULL: /workspace */
    char *const *argv;      /* the command, NULL-terminated; argv[0] searched in PATH */
    const char *const *env; /* extra NAME=VALUE entries (n_env of them) */
    size_t n_env;
    const char *const *ro_binds; /* extra host paths bound read-only at the same place */
    size_t n_ro_binds;
    bool pass_stdin;            /* give the command the caller's fd 0 (default /dev/null) */
    bool stream;                /* also copy output to the caller's fds 1 and 2 as it comes */
    int64_t uid, gid;           /* as root: the ids the command runs as; -1: default */
    const volatile int *cancel; /* when it becomes non-zero the sandbox is killed, or NULL */
};

/* Fills p with the defaults of core/limits.h; argv and project_dir stay NULL. */
void sandbox_params_default(struct sandbox_params *p);

enum sandbox_end {
    SANDBOX_END_EXITED,   /* exit_code is valid */
    SANDBOX_END_SIGNALED, /* signal is valid */
    SANDBOX_END_OOM,      /* killed for exceeding the memory limit */
    SANDBOX_END_TIMEOUT,  /* killed at the wall-clock limit */
    SANDBOX_END_COUNT
};

struct sandbox_result {
    enum sandbox_end end;
    int exit_code; /* EXITED: the exit status; otherwise -1 */
    int signal;    /* SIGNALED/OOM/TIMEOUT: the signal that ended it, else 0 */
    bool oom;      /* the memory cgroup killed something in the sandbox */
    bool timed_out;
    bool stdout_truncated;
    bool stderr_truncated;
    char *out; /* captured stdout (NUL-terminated, out_len bytes), owned */
    size_t out_len;
    char *err;
    size_t err_len;
    uint64_t wall_ms;
    const char *backend;     /* "cgroup-v2", "cgroup-v1" or "rlimit" (static) */
    uint64_t memory_peak;    /* bytes, 0 when unknown */
    uint64_t n_output_files; /* files copied out of /output */
    uint64_t output_bytes;
    uint64_t n_output_skipped;    /* symlinks, special files, over quota */
    char notes[SLM_DIAG_MSG_MAX]; /* warnings for the caller ("" if none) */
};

/*
 * Runs p->argv in a sandbox and waits for it. Returns 0 when the command ran
 * (whatever its status: see r) or a negative SLM_E* code with d naming the
 * cause when the sandbox could not be set up: SLM_ENOTFOUND (project
 * directory missing), SLM_EINVAL (bad parameters), SLM_EPERM (no user
 * namespaces, cgroup not creatable), SLM_EIO, SLM_ENOMEM. On error nothing is
 * left behind (mounts live only in the child's namespace; cgroups are
 * removed). r is always initialised; free it with sandbox_result_fini().
 */
SLM_NODISCARD int sandbox_run(const struct sandbox_params *p, struct sandbox_result *r,
                              struct slm_diag *d);

/* Frees the result's buffers; r may be NULL or already finished. */
void sandbox_result_fini(struct sandbox_result *r);

/* Returns "exited", "signaled", "oom" or "timeout" (static). */
const char *sandbox_end_name(enum sandbox_end e);

/* Appends the result as one JSON object (docs/sandbox.md lists the fields). */
SLM_NODISCARD int sandbox_result_json(const struct sandbox_result *r, struct slm_buf *out);

/*
 * Appends the run_command tool definition (OpenAI function-calling schema,
 * the same text as docs/tools/run_command.json).
 */
SLM_NODISCARD int sandbox_tool_json(struct slm_buf *out);

/* Quotas and counters of sandbox_copy_out(). */
struct sandbox_copy_stats {
    uint64_t files_max; /* regular files and directories */
    uint64_t bytes_max;
    uint64_t n_files;
    uint64_t n_bytes;
    uint64_t n_skipped; /* symbolic links, devices, FIFOs, sockets, over quota */
};

/*
 * Copies the tree under src_dirfd into dst_dirfd: regular files (mode bits
 * 0777 at most, never setuid) and directories; symbolic links and special
 * files are skipped and counted, never followed (openat2 RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS, O_NOFOLLOW on every component). An existing entry in
 * dst that is not a directory is replaced, not written through. Stops adding
 * files past the quotas in st (counted as skipped). Borrows both fds.
 * Returns 0 or SLM_EIO with d naming the file.
 */
SLM_NODISCARD int sandbox_copy_out(int src_dirfd, int dst_dirfd, struct sandbox_copy_stats *st,
                                   struct slm_diag *d);
