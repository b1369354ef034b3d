// What Swift's Glibc module does not export: O_TMPFILE, pipe2(2), renameat2(2), the <sys/wait.h> status macros
// and posix_spawn_file_actions_addclosefrom_np(3). Taken from the C headers in shim.c, so no flag value or bit
// layout is hard-coded in Swift.
//
// This header includes no system header on purpose: the implementations need _GNU_SOURCE, and a module header
// that defined it would give the C library's types (fd_set, ...) a second definition that clashes with Swift's
// Glibc module in a clean build. Only plain C types cross here.
#ifndef PAYHOOK_SHIM_H
#define PAYHOOK_SHIM_H

/// `O_TMPFILE` as open(2) documents it (it includes `O_DIRECTORY`).
int payhook_o_tmpfile(void);

/// renameat2(2) with `RENAME_NOREPLACE`: fails with EEXIST instead of replacing `to`, atomically. EINVAL where the
/// file system does not support the flag.
int payhook_rename_noreplace(const char *from, const char *to);

/// pipe2(2): both ends created with the given flags (`O_CLOEXEC`, `O_NONBLOCK`) atomically.
int payhook_pipe2(int fds[2], int flags);

/// wait(2)'s status macros.
int payhook_wifexited(int status);
int payhook_wexitstatus(int status);
int payhook_wifsignaled(int status);
int payhook_wtermsig(int status);

/// posix_spawn_file_actions_addclosefrom_np(3) on a `posix_spawn_file_actions_t *`: the child closes every
/// descriptor from `from` up, whether or not it is close-on-exec. A GNU extension (glibc 2.34); older C
/// libraries get ENOSYS.
int payhook_spawn_addclosefrom(void *actions, int from);

/// The git commit and the build date (YYYY-MM-DD, UTC) of this binary, for `payhook --version` and
/// `payhook_build_info`. `make release` passes them as `-DPAYHOOK_COMMIT="…"` and `-DPAYHOOK_BUILD_DATE="…"`
/// (docs/deploy.md); a plain `swift build` leaves both "unknown".
const char *payhook_build_commit(void);
const char *payhook_build_date(void);

#endif
