/* Test-only triggers for mdatp-kernel-test: syscalls Swift cannot call
 * (variadic syscall(2)) or whose glibc wrapper is not imported. */
#ifndef MDATP_KERNEL_TEST_H
#define MDATP_KERNEL_TEST_H

/* ptrace(PTRACE_TRACEME): 0 or -errno. */
int mdatp_kt_traceme(void);
/* finit_module(fd, "", 0): 0 or -errno. */
int mdatp_kt_finit_module(int fd);
/* BPF_PROG_LOAD of "r0 = 0; exit" as a socket filter named `name`: fd or -errno. */
int mdatp_kt_load_socket_filter(const char *name);

/* In a new mount namespace (private from /), mounts a 64 KiB tmpfs named
 * `source` on `target`: 0 or -errno. */
int mdatp_kt_mount_tmpfs(const char *source, const char *target);

#endif
