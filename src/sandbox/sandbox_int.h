/*
 * sandbox_int.h - internals shared by the files of src/sandbox/.
 *
 * Who does what:
 *   sandbox.c  the supervisor: validates parameters, prepares everything the
 *              child needs (no allocation happens after clone), clones the
 *              child, writes its id maps, places it in the cgroup, relays
 *              its output, enforces the timeout, collects the result;
 *   ns.c       clone into new namespaces, id maps, explaining a failed clone,
 *              bringing up lo;
 *   mount.c    the child's file system (runs as pid 1 of the new namespaces);
 *   seccomp.c  builds the two BPF programs with libseccomp in the supervisor;
 *   cgroup.c   cgroup v2 and v1 back-ends (supervisor side);
 *   init.c     the child: set-up order, privilege drop, pid 1 reaper;
 *   collect.c  copying /output out without following symbolic links.
 *
 * Nothing here allocates after clone: the child only uses the buffers that
 * struct sandbox__child holds.
 */
#pragma once

#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/limits.h"
#include "sandbox/sandbox.h"

/* Exit status of the child when its set-up failed (the message went to the error pipe). */
#define SANDBOX__EXIT_SETUP 125

/* Where the tmpfs that becomes the new root is mounted in the child's private namespace. */
#define SANDBOX__NEWROOT "/tmp"

/* Home directory, user name and host name inside. */
#define SANDBOX__HOME     "/home/sandbox"
#define SANDBOX__USER     "sandbox"
#define SANDBOX__HOSTNAME "sandbox"

/* ---- cgroups (cgroup.c) ---- */

enum sandbox__ctl { SANDBOX__CTL_MEMORY, SANDBOX__CTL_PIDS, SANDBOX__CTL_CPU, SANDBOX__CTL_COUNT };

/* Where each hierarchy is mounted and where this process sits in it. */
struct sandbox__cg_paths {
    char v2_mount[SLM_LIMIT_SANDBOX_PATH]; /* "" if no cgroup2 mount */
    char v2_self[SLM_LIMIT_SANDBOX_PATH];  /* our path in it ("/..." ) */
    char v1_mount[SANDBOX__CTL_COUNT][SLM_LIMIT_SANDBOX_PATH];
    char v1_self[SANDBOX__CTL_COUNT][SLM_LIMIT_SANDBOX_PATH];
};

/* The cgroup(s) made for one sandbox. version 0 means none (rlimits only). */
struct sandbox__cgroup {
    int version;
    bool have[SANDBOX__CTL_COUNT]; /* v1: which hierarchies we made a group in */
    char dir[SANDBOX__CTL_COUNT][SLM_LIMIT_SANDBOX_PATH]; /* v2 uses dir[0] only */
};

/* Parses /proc/self/mountinfo text (NUL-terminated) into the mount fields of out. */
void sandbox__cg_parse_mountinfo(const char *text, struct sandbox__cg_paths *out);
/* Parses /proc/self/cgroup text into the self fields of out. */
void sandbox__cg_parse_self(const char *text, struct sandbox__cg_paths *out);

/*
 * Creates the cgroup for p (mode p->cgroup) and writes its limits. With AUTO a
 * failure falls back to rlimits and says so in notes (notes_len bytes).
 * Returns 0 or SLM_EPERM/SLM_EIO with d naming the file and the way around.
 */
SLM_NODISCARD int sandbox__cgroup_create(struct sandbox__cgroup *cg, const struct sandbox_params *p,
                                         char *notes, size_t notes_len, struct slm_diag *d);
/* Moves pid into the cgroup(s). */
SLM_NODISCARD int sandbox__cgroup_attach(const struct sandbox__cgroup *cg, pid_t pid,
                                         struct slm_diag *d);
/* Kills every process in the cgroup (best effort). */
void sandbox__cgroup_kill(const struct sandbox__cgroup *cg);
/* Reads whether the memory controller killed something and the peak usage. */
void sandbox__cgroup_stats(const struct sandbox__cgroup *cg, bool *oom, uint64_t *peak);
/* Removes the cgroup directories (retrying while the kernel still holds tasks). */
void sandbox__cgroup_destroy(struct sandbox__cgroup *cg);
/* Returns "cgroup-v2", "cgroup-v1" or "rlimit". */
const char *sandbox__cgroup_backend(const struct sandbox__cgroup *cg);

/* ---- seccomp (seccomp.c) ---- */

/* Two stacked BPF programs: the argument filter, then the syscall allow-list. */
struct sandbox__bpf {
    struct sock_fprog args;
    struct sock_fprog main;
};

/* Builds both programs (returns new: free with sandbox__seccomp_fini). */
SLM_NODISCARD int sandbox__seccomp_build(struct sandbox__bpf *bpf, struct slm_diag *d);
void sandbox__seccomp_fini(struct sandbox__bpf *bpf);
/* Installs both programs in the calling process (no allocation); returns 0 or -errno. */
int sandbox__seccomp_install(const struct sandbox__bpf *bpf);

/* ---- the child (init.c, mount.c, ns.c) ---- */

/* Everything the child needs, prepared before clone. */
struct sandbox__child {
    const struct sandbox_params *p;
    char project[SLM_LIMIT_SANDBOX_PATH]; /* absolute host path */
    char workdir[SLM_LIMIT_SANDBOX_PATH]; /* absolute path inside */
    uid_t uid;                            /* ids inside = outside (identity map of one id) */
    gid_t gid;
    bool may_setgroups; /* the supervisor is root: the child can drop supplementary groups */
    char **envp;        /* the command's environment */
    struct sandbox__bpf bpf;
    uint64_t rlimit_data; /* 0: none */
    uint64_t rlimit_nproc;
    uint64_t rlimit_cpu_s;
    unsigned n_cpus; /* affinity floor; 0: leave */
    int fd_sync;     /* read end: the supervisor writes one byte when the maps are set */
    int fd_errw;     /* write end: a set-up failure message; closed when set-up succeeded */
    int fd_status;   /* write end: the command's wait status (int) */
    int fd_sock;     /* unix socket: the child sends an fd of /output */
    int fd_out;      /* write ends of the stdout and stderr pipes */
    int fd_err;
    int fd_in; /* the caller's stdin, or -1 for /dev/null */
};

/* Runs the child: never returns. */
SLM_NORETURN void sandbox__child_main(const struct sandbox__child *c);

/* Switches to c->uid/c->gid keeping the namespace's capabilities (init.c). */
void sandbox__child_set_ids(const struct sandbox__child *c);

/* Reports a set-up failure to the supervisor and exits. */
SLM_NORETURN void sandbox__child_fail(const struct sandbox__child *c, int err, const char *fmt, ...)
    SLM_PRINTF(3, 4);

/*
 * Builds the new root and pivots into it (mount.c). Called by the child with
 * all capabilities of its user namespace; reports failures itself.
 */
void sandbox__mount_setup(const struct sandbox__child *c);

/* clone(2) with flags | SIGCHLD, fork semantics; returns the pid, 0 in the child, -1. */
pid_t sandbox__clone(unsigned long flags);
/* Writes all of s to the existing file at path (procfs, cgroupfs): 0 or -errno. */
int sandbox__write_file(const char *path, const char *s);

/* Writes the uid/gid maps of pid (identity map of uid and gid). */
SLM_NODISCARD int sandbox__write_idmaps(pid_t pid, uid_t uid, gid_t gid, bool privileged,
                                        struct slm_diag *d);

/* Explains why clone with CLONE_NEWUSER failed with errno err. Returns SLM_EPERM or SLM_EIO. */
int sandbox__userns_explain(int err, struct slm_diag *d);

/* Brings up lo in the current network namespace; returns 0 or -errno. */
int sandbox__loopback_up(void);
