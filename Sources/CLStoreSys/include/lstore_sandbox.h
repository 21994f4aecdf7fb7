#ifndef LSTORE_SANDBOX_H
#define LSTORE_SANDBOX_H
// The sandbox of a recipe's RUN (sandbox.c, spec/build.md §4).

/// What one RUN needs: the directories of its overlay, what the new root is given, and the command.
struct lstore_sandbox {
    /// The parent's squashfs image, mounted read-only on `lower`; NULL: `lower` is a directory.
    const char *image;
    const char *lower;
    /// A directory laid over `lower` holding the mount points the parent lacks; NULL when none.
    const char *mount_points;
    const char *upper;
    const char *work;
    /// Where the overlay is mounted: the command's root.
    const char *root;
    /// A file bound read-only over the root's /etc/resolv.conf; NULL: none.
    const char *resolv_conf;
    /// A new network namespace with only loopback, up.
    int isolate_network;
    const char *hostname;
    unsigned uid, gid;
    const unsigned *groups;
    int group_count;
    /// The command's working directory inside the root.
    const char *cwd;
    /// The command: argv[0] a path, or a name looked up in envp's PATH. Both end with NULL.
    const char *const *argv;
    const char *const *envp;
};

/// Runs the command in the sandbox, the calling process keeping it; standard input is the lifeline
/// (end of file: kill everything). Returns the command's status (its exit code, or 128 + the signal
/// that ended it); -1 when the sandbox could not be set up, -2 when the lifeline ended, with `error`
/// saying what happened.
int lstore_sandbox_run(const struct lstore_sandbox *sandbox, char *error, int error_size);

#endif
