/*
 * seccomp.c - the sandbox's seccomp filter, built with libseccomp.
 *
 * Two programs are stacked (the kernel runs both; the most restrictive
 * answer wins, and between two errnos the later-installed program's):
 *
 *  1. the argument filter (default ALLOW): ioctl TIOCSTI/TIOCLINUX compared
 *     on the low 32 bits the kernel uses (so high bits do not slip past),
 *     socket families other than AF_UNIX/AF_INET/AF_INET6 and raw/packet
 *     socket types, clone with any CLONE_NEW* flag -> EPERM;
 *  2. the main allow-list (default EPERM): every system call libseccomp
 *     knows for this architecture is allowed except the deny table below;
 *     numbers libseccomp does not know (newer than it) return ENOSYS so that
 *     libc falls back as on an older kernel; clone3 returns ENOSYS (its flags
 *     live in memory seccomp cannot read, and glibc falls back to clone);
 *     personality is allowed only for the default personas.
 *
 * Both check the architecture: a foreign ABI (i386 int 0x80, x32 numbers)
 * kills the process. libseccomp needs an allocator, so the programs are
 * generated in the supervisor and exported as plain BPF that the child
 * installs with prctl() without allocating.
 */
#include <errno.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "sandbox/sandbox_int.h"

/* System calls a build or a test never needs: they get EPERM. */
static const char *const seccomp_deny[] = {
    /* namespaces and mounts: set-up is over */
    "unshare",
    "setns",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    /* other processes' memory, fds and state */
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "process_madvise",
    "pidfd_getfd",
    "kcmp",
    /* kernel attack surface with a record of privilege escalations */
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "open_by_handle_at",
    "fanotify_init",
    "modify_ldt",
    "move_pages",
    "migrate_pages",
    "mbind",
    "set_mempolicy",
    "set_mempolicy_home_node",
    /* the machine itself */
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "query_module",
    "get_kernel_syms",
    "swapon",
    "swapoff",
    "acct",
    "syslog",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "stime",
    "iopl",
    "ioperm",
    "quotactl",
    "quotactl_fd",
    "nfsservctl",
    "lookup_dcookie",
    "vhangup",
    "uselib",
    "_sysctl",
    "vm86",
    "vm86old",
};

/* personality() values that stay allowed: PER_LINUX, PER_LINUX32, UNAME26 variant, query. */
static const uint32_t seccomp_personas[] = { 0x0, 0x8, 0x20008, 0xffffffffu };

/* Socket families allowed: AF_UNIX, AF_INET, AF_INET6; the rest up to AF_MAX are denied. */
#define SECCOMP_AF_MAX 46

/*
 * System call numbers below this that libseccomp does not know get ENOSYS
 * (x86-64 Linux 6.18 ends near 470); higher ones get the default EPERM.
 * Probing to 1024 made the filter 1,200 instructions and its generation 20 ms.
 */
#define SECCOMP_NR_PROBE 512

static bool seccomp_is_denied(const char *name)
{
    for (size_t i = 0; i < SLM_ARRAY_LEN(seccomp_deny); i++)
        if (strcmp(name, seccomp_deny[i]) == 0) return true;
    return false;
}

/* Exports ctx as BPF into prog (returns new). */
static int seccomp_export(scmp_filter_ctx ctx, struct sock_fprog *prog, struct slm_diag *d)
{
    struct stat st;
    struct sock_filter *insns = NULL;
    int fd, rc;
    ssize_t n;

    fd = memfd_create("slm-seccomp", MFD_CLOEXEC);
    if (fd < 0) return slm_diag_set(d, SLM_EIO, "seccomp: memfd_create: %s", strerror(errno));
    rc = seccomp_export_bpf(ctx, fd);
    if (rc < 0) {
        rc = slm_diag_set(d, SLM_EINTERNAL, "seccomp: export: %s", strerror(-rc));
        goto out;
    }
    if (fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size % sizeof(struct sock_filter) != 0 ||
        (size_t)st.st_size / sizeof(struct sock_filter) > BPF_MAXINSNS) {
        rc = slm_diag_set(d, SLM_EINTERNAL, "seccomp: exported program has a bad size");
        goto out;
    }
    insns = slm_malloc((size_t)st.st_size);
    if (insns == NULL) {
        rc = SLM_ENOMEM;
        goto out;
    }
    n = pread(fd, insns, (size_t)st.st_size, 0);
    if (n != st.st_size) {
        slm_free(insns);
        rc = slm_diag_set(d, SLM_EIO, "seccomp: reading the exported program failed");
        goto out;
    }
    prog->filter = insns;
    prog->len = (unsigned short)((size_t)st.st_size / sizeof(struct sock_filter));
    rc = 0;
out:
    close(fd);
    return rc;
}

/* Sets the attributes both programs share. */
static int seccomp_common_attrs(scmp_filter_ctx ctx)
{
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);

    if (rc == 0) rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
    if (rc == 0) rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    return rc;
}

/* The argument filter: default allow, EPERM for the argument patterns. */
static int seccomp_build_args(scmp_filter_ctx ctx)
{
    static const uint64_t ns_flags[] = { 0x00020000 /* CLONE_NEWNS */,
                                         0x02000000 /* CLONE_NEWCGROUP */,
                                         0x04000000 /* CLONE_NEWUTS */,
                                         0x08000000 /* CLONE_NEWIPC */,
                                         0x10000000 /* CLONE_NEWUSER */,
                                         0x20000000 /* CLONE_NEWPID */,
                                         0x40000000 /* CLONE_NEWNET */ };
    static const uint64_t bad_types[] = { 3 /* SOCK_RAW */, 10 /* SOCK_PACKET */ };
    static const uint64_t inet[] = { AF_INET, AF_INET6 };
    const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
    int rc = seccomp_common_attrs(ctx);

    if (rc == 0)
        rc = seccomp_rule_add(ctx, eperm, SCMP_SYS(ioctl), 1,
                              SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI));
    if (rc == 0)
        rc = seccomp_rule_add(ctx, eperm, SCMP_SYS(ioctl), 1,
                              SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCLINUX));
    for (size_t i = 0; rc == 0 && i < SLM_ARRAY_LEN(ns_flags); i++)
        rc = seccomp_rule_add(ctx, eperm, SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
    for (uint64_t af = 0; rc == 0 && af < SECCOMP_AF_MAX; af++) {
        if (af == AF_UNIX || af == AF_INET || af == AF_INET6) continue;
        rc = seccomp_rule_add(ctx, eperm, SCMP_SYS(socket), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffu, af));
    }
    for (size_t i = 0; rc == 0 && i < SLM_ARRAY_LEN(inet); i++)
        for (size_t j = 0; rc == 0 && j < SLM_ARRAY_LEN(bad_types); j++)
            rc = seccomp_rule_add(ctx, eperm, SCMP_SYS(socket), 2,
                                  SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffu, inet[i]),
                                  SCMP_A1(SCMP_CMP_MASKED_EQ, 0xf, bad_types[j]));
    return rc;
}

/* The main allow-list: default EPERM. */
static int seccomp_build_main(scmp_filter_ctx ctx)
{
    int rc = seccomp_common_attrs(ctx);

    for (int nr = 0; rc == 0 && nr < SECCOMP_NR_PROBE; nr++) {
        char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);

        if (name == NULL) {
            /* Unknown to libseccomp: newer than it, so say "not implemented". */
            rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), nr, 0);
        } else if (strcmp(name, "clone3") == 0) {
            rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), nr, 0);
        } else if (strcmp(name, "personality") == 0) {
            for (size_t i = 0; rc == 0 && i < SLM_ARRAY_LEN(seccomp_personas); i++)
                rc =
                    seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
                                     SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffu, seccomp_personas[i]));
        } else if (!seccomp_is_denied(name)) {
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
        }
        slm_free(name); /* libseccomp allocates with the C library; slm_free releases that */
    }
    return rc;
}

/*
 * Builds the argument filter and the main allow-list as exported BPF.
 * Returns 0, SLM_ENOMEM or SLM_EINTERNAL with d set.
 */
int sandbox__seccomp_build(struct sandbox__bpf *bpf, struct slm_diag *d)
{
    scmp_filter_ctx args = seccomp_init(SCMP_ACT_ALLOW);
    scmp_filter_ctx main_ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    int rc;

    memset(bpf, 0, sizeof(*bpf));
    if (args == NULL || main_ctx == NULL) {
        rc = slm_diag_set(d, SLM_ENOMEM, "seccomp: cannot create a filter context");
        goto out;
    }
    rc = seccomp_build_args(args);
    if (rc < 0) {
        rc = slm_diag_set(d, SLM_EINTERNAL, "seccomp: argument filter: %s", strerror(-rc));
        goto out;
    }
    rc = seccomp_build_main(main_ctx);
    if (rc < 0) {
        rc = slm_diag_set(d, SLM_EINTERNAL, "seccomp: allow-list: %s", strerror(-rc));
        goto out;
    }
    rc = seccomp_export(args, &bpf->args, d);
    if (rc == 0) rc = seccomp_export(main_ctx, &bpf->main, d);
    if (rc < 0) sandbox__seccomp_fini(bpf);
out:
    seccomp_release(args);
    seccomp_release(main_ctx);
    return rc;
}

/* Frees the programs; bpf may be zeroed. */
void sandbox__seccomp_fini(struct sandbox__bpf *bpf)
{
    slm_free(bpf->args.filter);
    slm_free(bpf->main.filter);
    memset(bpf, 0, sizeof(*bpf));
}

/*
 * Installs the argument filter, then the allow-list, in the calling thread
 * (no_new_privs must be set). Async-signal-safe. Returns 0 or -errno.
 */
int sandbox__seccomp_install(const struct sandbox__bpf *bpf)
{
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &bpf->args, 0, 0) < 0) return -errno;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &bpf->main, 0, 0) < 0) return -errno;
    return 0;
}
