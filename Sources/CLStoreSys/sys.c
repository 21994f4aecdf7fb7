#define _GNU_SOURCE
#include "lstore_sys.h"
#include <termios.h>
#include <unistd.h>
#include <string.h>

int lstore_terminal_width(int fd) {
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) != 0) return 0;
    return ws.ws_col;
}

int lstore_start_writeback(int fd, long long offset, long long length) {
    return sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE);
}

// Cancelling a build (spec/build.md §7): SIGINT, SIGTERM and SIGHUP close the lifeline of the
// running RUN, whose keeper then kills its namespace, and are remembered for the build to stop.
#include <signal.h>
#include <unistd.h>
static volatile sig_atomic_t cancel_signal = 0;
static int cancel_fd = -1;

static void on_cancel(int sig) {
    cancel_signal = sig;
    int fd = __atomic_exchange_n(&cancel_fd, -1, __ATOMIC_SEQ_CST);
    if (fd >= 0) close(fd);
}

void lstore_cancel_install(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_cancel;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGHUP, &action, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
}

void lstore_cancel_watch(int fd) {
    __atomic_store_n(&cancel_fd, fd, __ATOMIC_SEQ_CST);
    if (cancel_signal) on_cancel(cancel_signal);
}

int lstore_cancel_unwatch(void) { return __atomic_exchange_n(&cancel_fd, -1, __ATOMIC_SEQ_CST); }

int lstore_cancel_signal(void) { return cancel_signal; }

int lstore_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

#include <sys/vfs.h>
int lstore_statfs(const char *path, unsigned long long *free_bytes, long *type) {
    struct statfs info;
    if (statfs(path, &info) != 0) return -1;
    *free_bytes = (unsigned long long)info.f_bavail * (unsigned long long)info.f_bsize;
    *type = (long)info.f_type;
    return 0;
}
