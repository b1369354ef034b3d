// The GNU declarations (O_TMPFILE, pipe2, renameat2, posix_spawn_file_actions_addclosefrom_np) are only made
// under _GNU_SOURCE, which is defined here, in the one file that needs it, and never in the module's header.
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "payhook_shim.h"

int payhook_o_tmpfile(void) { return O_TMPFILE; }

int payhook_rename_noreplace(const char *from, const char *to) {
    return renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE);
}

int payhook_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }

int payhook_wifexited(int status) { return WIFEXITED(status); }
int payhook_wexitstatus(int status) { return WEXITSTATUS(status); }
int payhook_wifsignaled(int status) { return WIFSIGNALED(status); }
int payhook_wtermsig(int status) { return WTERMSIG(status); }

int payhook_spawn_addclosefrom(void *actions, int from) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    return posix_spawn_file_actions_addclosefrom_np((posix_spawn_file_actions_t *)actions, from);
#else
    (void)actions;
    (void)from;
    return ENOSYS;
#endif
}

// Defaults for a build that does not go through the Makefile (docs/deploy.md): no tracked file holds a commit.
#ifndef PAYHOOK_COMMIT
#define PAYHOOK_COMMIT "unknown"
#endif
#ifndef PAYHOOK_BUILD_DATE
#define PAYHOOK_BUILD_DATE "unknown"
#endif

const char *payhook_build_commit(void) { return PAYHOOK_COMMIT; }
const char *payhook_build_date(void) { return PAYHOOK_BUILD_DATE; }
