#ifndef LSTORE_SYS_H
#define LSTORE_SYS_H
// What Swift's Glibc module does not bring: extended attributes and device-number macros.
// (No <sys/stat.h> here: S_IFMT and friends would become ambiguous in Swift.)
#include <sys/types.h>
#include <sys/xattr.h>
#include <sys/sysmacros.h>
#include <sys/ioctl.h>
#include <fcntl.h>

static inline unsigned int lstore_major(dev_t dev) { return major(dev); }
static inline unsigned int lstore_minor(dev_t dev) { return minor(dev); }
static inline dev_t lstore_makedev(unsigned int maj, unsigned int min) { return makedev(maj, min); }

/// Starts writing back `length` bytes at `offset` of `fd` without waiting (sync_file_range with
/// SYNC_FILE_RANGE_WRITE), so that a later fsync has little left to do.
int lstore_start_writeback(int fd, long long offset, long long length);

/// The size of the terminal on `fd`, or 0 when it is not one.
int lstore_terminal_width(int fd);

/// Cancelling a build: SIGINT, SIGTERM and SIGHUP are remembered (`lstore_cancel_signal`) and close
/// the descriptor being watched, once. `lstore_cancel_unwatch` stops watching and returns the
/// descriptor when the handler has not closed it (the caller closes it then), else -1.
void lstore_cancel_install(void);
void lstore_cancel_watch(int fd);
int lstore_cancel_unwatch(void);
int lstore_cancel_signal(void);

/// pipe2(fds, O_CLOEXEC).
int lstore_pipe_cloexec(int fds[2]);

/// Free bytes (for an unprivileged user) and the type (f_type) of the file system holding `path`.
int lstore_statfs(const char *path, unsigned long long *free_bytes, long *type);

#endif
