// The sandbox a recipe's RUN executes in (spec/build.md §4). The calling process becomes its keeper:
// it enters new mount, PID, UTS and IPC namespaces (and a network namespace on request), mounts the
// parent's image and the overlay there, and forks the namespace's init, which takes a mount
// namespace of its own, mounts /proc, /sys, /dev, /dev/pts, /tmp and /etc/resolv.conf inside the
// new root, makes it the root (pivot_root, the host's detached) and forks the command, with
// Docker's default capabilities less MKNOD and NET_RAW.
// Every mount lives in those mount namespaces only: when the keeper and the namespace's processes
// are gone, however they went (kill -9 included), so are the mounts, and the loop device
// (LO_FLAGS_AUTOCLEAR). The keeper's standard input is a lifeline: when it reads end of file (the
// build died or gave up), it kills the namespace.
#define _GNU_SOURCE
#include "lstore_sandbox.h"
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/loop.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/// Writes "what: strerror" into the caller's buffer, returns -1.
static int fail(char *error, int size, const char *format, ...) {
    int saved = errno;
    char what[512];
    va_list args;
    va_start(args, format);
    vsnprintf(what, sizeof what, format, args);
    va_end(args);
    if (saved) snprintf(error, size, "%s: %s", what, strerror(saved));
    else snprintf(error, size, "%s", what);
    return -1;
}

/// A free loop device bound read-only to `image`, cleared when its last user goes; its fd.
static int attach_loop(const char *image, char *device, int device_size, char *error, int size) {
    int file = open(image, O_RDONLY | O_CLOEXEC);
    if (file < 0) return fail(error, size, "open %s", image);
    int control = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (control < 0) {
        close(file);
        return fail(error, size, "open /dev/loop-control");
    }
    for (int attempt = 0; attempt < 64; attempt++) {
        int number = ioctl(control, LOOP_CTL_GET_FREE);
        if (number < 0) {
            fail(error, size, "no free loop device");
            break;
        }
        snprintf(device, device_size, "/dev/loop%d", number);
        int loop = open(device, O_RDWR | O_CLOEXEC);
        if (loop < 0 && errno == ENOENT) {
            // No udev: the node is made here, as losetup does.
            if (mknod(device, S_IFBLK | 0660, makedev(7, number)) != 0 && errno != EEXIST) {
                fail(error, size, "mknod %s", device);
                break;
            }
            loop = open(device, O_RDWR | O_CLOEXEC);
        }
        if (loop < 0) {
            fail(error, size, "open %s", device);
            break;
        }
        struct loop_config config;
        memset(&config, 0, sizeof config);
        config.fd = file;
        config.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
        strncpy((char *)config.info.lo_file_name, image, LO_NAME_SIZE - 1);
        if (ioctl(loop, LOOP_CONFIGURE, &config) == 0) {
            close(file);
            close(control);
            return loop;
        }
        if (errno == EINVAL || errno == ENOTTY) {
            // Kernels before 5.8: bind, then set the flags.
            if (ioctl(loop, LOOP_SET_FD, file) == 0) {
                struct loop_info64 info;
                memset(&info, 0, sizeof info);
                info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
                if (ioctl(loop, LOOP_SET_STATUS64, &info) == 0) {
                    close(file);
                    close(control);
                    return loop;
                }
                ioctl(loop, LOOP_CLR_FD, 0);
            }
        }
        int saved = errno;
        close(loop);
        // Another process took this device first: ask for the next free one.
        if (saved != EBUSY) {
            errno = saved;
            fail(error, size, "bind %s to %s", device, image);
            break;
        }
    }
    close(file);
    close(control);
    return -1;
}

/// The capabilities a RUN keeps (Docker's default set less MKNOD and NET_RAW): it may own, change
/// and run the tree's files as any user, and nothing of the host's mounts, devices, network
/// configuration, clock, kernel or other processes.
static const int kept_capabilities[] = {
    CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID, CAP_KILL, CAP_SETGID, CAP_SETUID, CAP_SETPCAP,
    CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_AUDIT_WRITE, CAP_SETFCAP,
};

static int limit_capabilities(void) {
    unsigned long long keep = 0;
    for (unsigned i = 0; i < sizeof kept_capabilities / sizeof kept_capabilities[0]; i++) keep |= 1ULL << kept_capabilities[i];
    for (int cap = 0; cap <= 63; cap++) {
        if (keep & (1ULL << cap)) continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) return -1;
    }
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    for (int word = 0; word < 2; word++) {
        unsigned bits = (unsigned)(keep >> (32 * word));
        data[word].effective = bits;
        data[word].permitted = bits;
        data[word].inheritable = 0;
    }
    return (int)syscall(SYS_capset, &header, data);
}

/// `root` + `path`, into `out`.
static const char *under(char *out, int size, const char *root, const char *path) {
    snprintf(out, size, "%s%s", root, path);
    return out;
}

/// The namespace's init, after fork: the mounts inside the new root, then the command.
static void init_main(const struct lstore_sandbox *s, int report) {
    char path[4096], other[4096];
    const char *root = s->root;
    // Writes the failure to the keeper and ends.
#define INIT_FAIL(...) do { char message[1024]; fail(message, sizeof message, __VA_ARGS__); \
        if (write(report, message, strlen(message)) < 0) {} _exit(125); } while (0)

    // A mount namespace of init's own: the pivot_root below moves the root of every process of
    // its namespace, and the keeper must keep the host's.
    if (unshare(CLONE_NEWNS) != 0) INIT_FAIL("unshare (init's mount namespace)");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) INIT_FAIL("make / private");
    if (mount("proc", under(path, sizeof path, root, "/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
        INIT_FAIL("mount proc on %s", path);
    // The kernel's settings are the host's: read-only, as Docker has them.
    static const char *const read_only[] = {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"};
    for (unsigned i = 0; i < sizeof read_only / sizeof read_only[0]; i++) {
        under(path, sizeof path, root, read_only[i]);
        if (access(path, F_OK) != 0) continue;
        if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) != 0) INIT_FAIL("bind %s", path);
        if (mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
            INIT_FAIL("make %s read-only", path);
    }
    under(path, sizeof path, root, "/sys");
    if (mount("sysfs", path, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) {
        if (mount("/sys", path, NULL, MS_BIND | MS_REC, NULL) != 0) INIT_FAIL("mount sysfs on %s", path);
        mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL);
    }
    under(path, sizeof path, root, "/dev");
    if (mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=0755,size=65536k") != 0)
        INIT_FAIL("mount tmpfs on %s", path);
    static const char *const devices[] = {"null", "zero", "full", "random", "urandom", "tty"};
    for (unsigned i = 0; i < sizeof devices / sizeof devices[0]; i++) {
        char host[64];
        snprintf(host, sizeof host, "/dev/%s", devices[i]);
        snprintf(path, sizeof path, "%s/dev/%s", root, devices[i]);
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0) INIT_FAIL("create %s", path);
        close(fd);
        if (mount(host, path, NULL, MS_BIND, NULL) != 0) INIT_FAIL("bind %s on %s", host, path);
    }
    if (mkdir(under(path, sizeof path, root, "/dev/pts"), 0755) != 0) INIT_FAIL("mkdir %s", path);
    if (mount("devpts", path, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") != 0)
        INIT_FAIL("mount devpts on %s", path);
    if (mkdir(under(path, sizeof path, root, "/dev/shm"), 01777) != 0) INIT_FAIL("mkdir %s", path);
    if (mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0) INIT_FAIL("mount tmpfs on %s", path);
    static const char *const links[][2] = {
        {"pts/ptmx", "/dev/ptmx"}, {"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"},
        {"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"}, {"/proc/kcore", "/dev/core"},
    };
    for (unsigned i = 0; i < sizeof links / sizeof links[0]; i++) {
        if (symlink(links[i][0], under(path, sizeof path, root, links[i][1])) != 0) INIT_FAIL("symlink %s", path);
    }
    if (mount("tmpfs", under(path, sizeof path, root, "/tmp"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0)
        INIT_FAIL("mount tmpfs on %s", path);
    if (s->resolv_conf) {
        under(path, sizeof path, root, "/etc/resolv.conf");
        if (mount(s->resolv_conf, path, NULL, MS_BIND, NULL) != 0) INIT_FAIL("bind %s on %s", s->resolv_conf, path);
        mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL);
    }
    if (s->hostname && sethostname(s->hostname, strlen(s->hostname)) != 0) INIT_FAIL("sethostname");
    if (s->isolate_network) {
        // The new network namespace's loopback, up.
        int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct ifreq request;
        memset(&request, 0, sizeof request);
        strcpy(request.ifr_name, "lo");
        if (sock < 0 || ioctl(sock, SIOCGIFFLAGS, &request) != 0) INIT_FAIL("loopback");
        request.ifr_flags |= IFF_UP | IFF_RUNNING;
        if (ioctl(sock, SIOCSIFFLAGS, &request) != 0) INIT_FAIL("loopback up");
        close(sock);
    }

    // The new root becomes the root (pivot_root, the old one detached): unlike a chroot, nothing
    // of the host's tree stays reachable, whatever the command does.
    if (chdir(root) != 0) INIT_FAIL("chdir %s", root);
    if (syscall(SYS_pivot_root, ".", ".") != 0) INIT_FAIL("pivot_root %s", root);
    if (umount2(".", MNT_DETACH) != 0) INIT_FAIL("detach the old root");
    if (chdir("/") != 0) INIT_FAIL("chdir /");

    pid_t command = fork();
    if (command < 0) INIT_FAIL("fork");
    if (command == 0) {
        // The command: chrooted, as its user, signals as a new process would have them.
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
        if (s->cwd && chdir(s->cwd) != 0) {
            dprintf(2, "lstore: RUN: cannot change to the working directory %s: %s\n", s->cwd, strerror(errno));
            _exit(126);
        }
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0 && null != 0) {
            dup2(null, 0);
            close(null);
        }
        gid_t groups[256];
        int count = s->group_count < 256 ? s->group_count : 256;
        for (int i = 0; i < count; i++) groups[i] = s->groups[i];
        if (setgroups(count, groups) != 0) INIT_FAIL("setgroups");
        if (setgid(s->gid) != 0) INIT_FAIL("setgid %u", s->gid);
        // Root keeps its kept capabilities; another user none (setuid clears them).
        if (limit_capabilities() != 0) INIT_FAIL("limit capabilities");
        if (setuid(s->uid) != 0) INIT_FAIL("setuid %u", s->uid);
        const char *name = s->argv[0];
        if (strchr(name, '/')) {
            execve(name, (char *const *)s->argv, (char *const *)s->envp);
        } else {
            const char *search = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
            for (const char *const *e = s->envp; *e; e++) {
                if (strncmp(*e, "PATH=", 5) == 0) search = *e + 5;
            }
            int saved = ENOENT;
            while (*search) {
                const char *end = strchr(search, ':');
                int length = end ? (int)(end - search) : (int)strlen(search);
                snprintf(other, sizeof other, "%.*s/%s", length, length ? search : ".", name);
                execve(other, (char *const *)s->argv, (char *const *)s->envp);
                if (errno != ENOENT) saved = errno;
                if (!end) break;
                search = end + 1;
            }
            errno = saved;
        }
        dprintf(2, "lstore: RUN: cannot run %s: %s\n", name, strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    close(report);
    // Init: reaps every process of the namespace; when the command ends, the rest are killed.
    int status = 0, code = -1;
    for (;;) {
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (pid == command) {
            code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            kill(-1, SIGKILL);
        }
    }
    _exit(code < 0 ? 125 : code);
#undef INIT_FAIL
}

int lstore_sandbox_run(const struct lstore_sandbox *s, char *error, int error_size) {
    error[0] = 0;
    // Only the descriptors the command is given reach it.
    syscall(436 /* close_range */, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
    setsid();
    int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | (s->isolate_network ? CLONE_NEWNET : 0);
    if (unshare(flags) != 0) return fail(error, error_size, "unshare (new namespaces)");
    // Nothing mounted from here on reaches the host's mount table.
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return fail(error, error_size, "make / private");
    char device[64] = "";
    if (s->image) {
        int loop = attach_loop(s->image, device, sizeof device, error, error_size);
        if (loop < 0) return -1;
        int mounted = mount(device, s->lower, "squashfs", MS_RDONLY | MS_NODEV, NULL);
        int saved = errno;
        close(loop);
        errno = saved;
        if (mounted != 0) return fail(error, error_size, "mount %s (%s) on %s", s->image, device, s->lower);
    }
    // Everything the command writes lands in the upper directory itself: no redirects, no index,
    // no metadata-only copies (spec/build.md §5).
    char options[8192];
    snprintf(options, sizeof options, "lowerdir=%s%s%s,upperdir=%s,workdir=%s,redirect_dir=off,index=off,metacopy=off",
             s->mount_points ? s->mount_points : "", s->mount_points ? ":" : "", s->lower, s->upper, s->work);
    if (mount("overlay", s->root, "overlay", MS_NODEV, options) != 0) return fail(error, error_size, "mount overlay on %s", s->root);

    int report[2];
    if (pipe2(report, O_CLOEXEC | O_NONBLOCK) != 0) return fail(error, error_size, "pipe");
    pid_t init = fork();
    if (init < 0) return fail(error, error_size, "fork");
    if (init == 0) {
        close(report[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        init_main(s, report[1]);
    }
    close(report[1]);
    // The keeper: waits for init; kills it when the lifeline (standard input) reaches its end.
    int status = 0, lifeline = 1, code = -1;
    for (;;) {
        pid_t pid = waitpid(init, &status, WNOHANG);
        if (pid == init) {
            code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            break;
        }
        struct pollfd watch = {.fd = 0, .events = POLLIN};
        int ready = poll(&watch, lifeline ? 1 : 0, 50);
        if (ready > 0 && (watch.revents & (POLLHUP | POLLERR | POLLNVAL | POLLIN))) {
            char byte;
            if ((watch.revents & POLLIN) && read(0, &byte, 1) > 0) continue;
            lifeline = 0;
            kill(init, SIGKILL);
            waitpid(init, &status, 0);
            snprintf(error, error_size, "interrupted");
            code = -2;
            break;
        }
    }
    char message[1024];
    ssize_t length = read(report[0], message, sizeof message - 1);
    close(report[0]);
    if (length > 0 && code >= 0) {
        message[length] = 0;
        snprintf(error, error_size, "%s", message);
        code = -1;
    }
    umount2(s->root, MNT_DETACH);
    if (s->image) umount2(s->lower, MNT_DETACH);
    return code;
}
