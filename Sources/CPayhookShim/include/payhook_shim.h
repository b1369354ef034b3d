// What Swift's Glibc module does not export: O_TMPFILE, pipe2(2), renameat2(2), the <sys/wait.h> status macros
// and posix_spawn_file_actions_addclosefrom_np(3). Taken from the C headers here, so no flag value or bit
// layout is hard-coded in Swift.
#ifndef PAYHOOK_SHIM_H
#define PAYHOOK_SHIM_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/wait.h>

/// `O_TMPFILE` as open(2) documents it (it includes `O_DIRECTORY`).
static inline int payhook_o_tmpfile(void) { return O_TMPFILE; }

/// renameat2(2) with `RENAME_NOREPLACE`: fails with EEXIST instead of replacing `to`, atomically. EINVAL where the
/// file system does not support the flag.
static inline int payhook_rename_noreplace(const char *from, const char *to) {
    return renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE);
}

/// pipe2(2): both ends created with the given flags (`O_CLOEXEC`, `O_NONBLOCK`) atomically.
static inline int payhook_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }

/// wait(2)'s status macros.
static inline int payhook_wifexited(int status) { return WIFEXITED(status); }
static inline int payhook_wexitstatus(int status) { return WEXITSTATUS(status); }
static inline int payhook_wifsignaled(int status) { return WIFSIGNALED(status); }
static inline int payhook_wtermsig(int status) { return WTERMSIG(status); }

/// posix_spawn_file_actions_addclosefrom_np(3): the child closes every descriptor from `from` up, whether or not
/// it is close-on-exec. A GNU extension (glibc 2.34), declared only under _GNU_SOURCE, which Swift's Glibc
/// module is not built with. Older C libraries get ENOSYS.
static inline int payhook_spawn_addclosefrom(posix_spawn_file_actions_t *actions, int from) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
#else
    (void)actions;
    (void)from;
    return ENOSYS;
#endif
}

#endif
