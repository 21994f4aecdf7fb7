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

#endif
