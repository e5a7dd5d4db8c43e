/*
 * test_sandbox_try.c - sbx-try: perform one operation and exit with its errno
 * (0 on success), printing the errno's name. Built by test_sandbox.sh and run
 * inside the sandbox, like bubblewrap's tests/try-syscall.c.
 *
 *   sbx-try OP [ARG...]
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

static int ret(long r)
{
    int e = r < 0 ? errno : 0;

    printf("%s\n", e == 0 ? "OK" : strerrorname_np(e));
    return e;
}

static int tcp_connect(const char *ip, int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0) return ret(-1);
    inet_pton(AF_INET, ip, &a.sin_addr);
    return ret(connect(fd, (struct sockaddr *)&a, sizeof(a)));
}

static int abstract_connect(const char *name)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    size_t n = strlen(name);

    if (fd < 0) return ret(-1);
    memcpy(a.sun_path + 1, name, n);
    return ret(connect(fd, (struct sockaddr *)&a, (socklen_t)(sizeof(sa_family_t) + 1 + n)));
}

static void *thread_ptrace(void *arg)
{
    (void)arg;
    return (void *)(long)(ptrace(PTRACE_TRACEME, 0, NULL, NULL) < 0 ? errno : 0);
}

static int fork_bomb(void)
{
    long n = 0;

    for (;;) {
        pid_t p = fork();

        if (p == 0) {
            pause();
            _exit(0);
        }
        if (p < 0) break;
        n++;
    }
    printf("forked %ld\n", n);
    return 0;
}

int main(int argc, char **argv)
{
    const char *op = argc > 1 ? argv[1] : "";
    const char *a = argc > 2 ? argv[2] : "";
    char c = 'x';

    setvbuf(stdout, NULL, _IONBF, 0);
    if (!strcmp(op, "tcp")) return tcp_connect(a, argc > 3 ? atoi(argv[3]) : 80);
    if (!strcmp(op, "udp")) {
        struct sockaddr_in s = { .sin_family = AF_INET, .sin_port = htons(53) };
        int fd = socket(AF_INET, SOCK_DGRAM, 0);

        inet_pton(AF_INET, a, &s.sin_addr);
        return ret(fd < 0 ? -1 : sendto(fd, "x", 1, 0, (struct sockaddr *)&s, sizeof(s)));
    }
    if (!strcmp(op, "abstract")) return abstract_connect(a);
    if (!strcmp(op, "netlink")) return ret(socket(AF_NETLINK, SOCK_RAW, 0));
    if (!strcmp(op, "netlink-hi"))
        return ret(syscall(SYS_socket, 0x100000000L | AF_NETLINK, SOCK_RAW, 0));
    if (!strcmp(op, "packet")) return ret(socket(AF_PACKET, SOCK_RAW, 0));
    if (!strcmp(op, "raw")) return ret(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
    if (!strcmp(op, "vsock")) return ret(socket(40 /* AF_VSOCK */, SOCK_STREAM, 0));
    if (!strcmp(op, "write")) return ret(open(a, O_WRONLY | O_CREAT, 0644));
    if (!strcmp(op, "read")) return ret(open(a, O_RDONLY));
    if (!strcmp(op, "mount")) return ret(mount("tmpfs", "/tmp", "tmpfs", 0, NULL));
    if (!strcmp(op, "umount")) return ret(umount2("/proc", MNT_DETACH));
    if (!strcmp(op, "pivot_root")) return ret(syscall(SYS_pivot_root, "/tmp", "/tmp"));
    if (!strcmp(op, "chroot")) return ret(chroot("/tmp"));
    if (!strcmp(op, "open_by_handle_at")) {
        char buf[sizeof(struct file_handle) + 128];
        struct file_handle *h = (struct file_handle *)(void *)buf;

        h->handle_bytes = 8;
        h->handle_type = 1;
        memset(h->f_handle, 0, 8);
        return ret(syscall(SYS_open_by_handle_at, AT_FDCWD, h, O_RDONLY));
    }
    if (!strcmp(op, "mknod")) return ret(mknod(a, S_IFCHR | 0600, makedev(1, 3)));
    if (!strcmp(op, "mkfifo")) return ret(mkfifo(a, 0600));
    if (!strcmp(op, "kill-all")) return ret(kill(-1, SIGKILL));
    if (!strcmp(op, "ptrace")) {
        pid_t p = fork();
        int e;

        if (p == 0) {
            pause();
            _exit(0);
        }
        e = ret(ptrace(PTRACE_ATTACH, p, NULL, NULL));
        kill(p, SIGKILL);
        return e;
    }
    if (!strcmp(op, "ptrace-thread")) {
        pthread_t t;
        void *r;

        pthread_create(&t, NULL, thread_ptrace, NULL);
        pthread_join(t, &r);
        errno = (int)(long)r;
        return ret(r == NULL ? 0 : -1);
    }
    if (!strcmp(op, "unshare-user")) return ret(unshare(CLONE_NEWUSER));
    if (!strcmp(op, "unshare-net")) return ret(unshare(CLONE_NEWNET));
    if (!strcmp(op, "setns")) return ret(setns(open("/proc/1/ns/mnt", O_RDONLY), 0));
    if (!strcmp(op, "clone-newuser"))
        return ret(syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, NULL));
    if (!strcmp(op, "clone3")) return ret(syscall(435 /* clone3 */, NULL, 0));
    if (!strcmp(op, "io_uring_setup")) return ret(syscall(425, 1, calloc(1, 256)));
    if (!strcmp(op, "bpf")) return ret(syscall(SYS_bpf, 0, NULL, 0));
    if (!strcmp(op, "perf_event_open"))
        return ret(syscall(SYS_perf_event_open, calloc(1, 256), 0, -1, -1, 0));
    if (!strcmp(op, "userfaultfd")) return ret(syscall(SYS_userfaultfd, 0));
    if (!strcmp(op, "keyctl"))
        return ret(syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
    if (!strcmp(op, "add_key"))
        return ret(syscall(SYS_add_key, "user", "k", "v", 1, KEY_SPEC_SESSION_KEYRING));
    if (!strcmp(op, "request_key")) return ret(syscall(SYS_request_key, "user", "k", NULL, 0));
    if (!strcmp(op, "kexec_load")) return ret(syscall(SYS_kexec_load, 0, 0, NULL, 0));
    if (!strcmp(op, "init_module")) return ret(syscall(SYS_init_module, NULL, 0, ""));
    if (!strcmp(op, "finit_module")) return ret(syscall(SYS_finit_module, 0, "", 0));
    if (!strcmp(op, "swapon")) return ret(syscall(SYS_swapon, "/tmp/x", 0));
    if (!strcmp(op, "reboot")) return ret(syscall(SYS_reboot, 0, 0, 0, NULL));
    if (!strcmp(op, "process_vm_readv"))
        return ret(syscall(SYS_process_vm_readv, 1, NULL, 0, NULL, 0, 0));
    if (!strcmp(op, "process_vm_writev"))
        return ret(syscall(SYS_process_vm_writev, 1, NULL, 0, NULL, 0, 0));
    if (!strcmp(op, "personality")) return ret(personality(PER_LINUX | ADDR_NO_RANDOMIZE));
    if (!strcmp(op, "personality-query")) return ret(personality(0xffffffff));
    if (!strcmp(op, "tiocsti")) return ret(ioctl(0, TIOCSTI, &c));
    if (!strcmp(op, "tiocsti-hi")) return ret(syscall(SYS_ioctl, 0, 0x100000000UL | TIOCSTI, &c));
    if (!strcmp(op, "sethostname")) return ret(sethostname("evil", 4));
    if (!strcmp(op, "exe-write")) return ret(open("/proc/self/exe", O_WRONLY));
    if (!strcmp(op, "int80")) {
        long r;

        __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
        printf("int80 returned %ld\n", r);
        return 0;
    }
    if (!strcmp(op, "x32")) return ret(syscall(0x40000000L | SYS_getpid));
    if (!strcmp(op, "getpid")) return ret(syscall(SYS_getpid));
    if (!strcmp(op, "alloc")) {
        size_t n = (size_t)atol(a) << 20;
        char *p = malloc(n);

        if (p == NULL) return ret(-1);
        for (size_t i = 0; i < n; i += 4096)
            p[i] = 1;
        printf("touched %zu\n", n);
        return 0;
    }
    if (!strcmp(op, "forkbomb")) return fork_bomb();
    if (!strcmp(op, "fds")) {
        for (int fd = 0; fd < 1024; fd++) {
            char path[64], link[512];
            ssize_t n;

            snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
            n = readlink(path, link, sizeof(link) - 1);
            if (n < 0) continue;
            link[n] = '\0';
            printf("%d %s\n", fd, link);
        }
        return 0;
    }
    fprintf(stderr, "sbx-try: unknown op '%s'\n", op);
    return 100;
}
