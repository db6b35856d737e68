/* Shims for what Swift cannot call directly: variadic C functions (prctl,
 * fcntl, syscall, seccomp_rule_add), CMSG_* macros, kernel structs without a
 * libc wrapper (Landlock, capset), and C11 atomics on shared memory.
 * Every function returns 0 / a value on success and -errno on failure. */
#ifndef MDATP_LINUX_H
#define MDATP_LINUX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- atomics on shared memory (rings): acquire/release as the ring needs */
static inline uint64_t mdatp_load_acquire_u64(const void *p)
{
	return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE);
}
static inline void mdatp_store_release_u64(void *p, uint64_t v)
{
	__atomic_store_n((uint64_t *)p, v, __ATOMIC_RELEASE);
}
static inline uint32_t mdatp_load_acquire_u32(const void *p)
{
	return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE);
}
static inline void mdatp_store_release_u32(void *p, uint32_t v)
{
	__atomic_store_n((uint32_t *)p, v, __ATOMIC_RELEASE);
}
static inline void mdatp_fence_seq_cst(void)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* ---- process attributes */
int mdatp_prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5);
int mdatp_fcntl_int(int fd, int cmd, int arg);
int mdatp_memfd_create(const char *name, unsigned int flags);
int mdatp_eventfd(unsigned int initval, int flags);
/* Empties the effective, permitted, inheritable and ambient sets. */
int mdatp_drop_all_capabilities(void);
/* Keeps only the given capabilities (bit numbers) in permitted+effective, none
 * inheritable. */
int mdatp_keep_capabilities(const int *caps, size_t n);
/* Drops every capability not in keep (bit mask) from the bounding set, and
 * clears the ambient set. Needs CAP_SETPCAP: call before giving up root. */
int mdatp_drop_bounding_except(uint64_t keep);
/* Reads the effective/bounding sets of this process. */
int mdatp_capabilities_now(uint64_t *effective, uint64_t *permitted);

/* ---- sandbox */
/* Landlock: allow read (+exec) beneath ro paths and read/write beneath rw
 * paths, deny the rest of the handled filesystem rights. Returns the ABI
 * version applied (>= 1), or -errno. */
int mdatp_landlock_restrict(const char *const *ro, size_t nro, const char *const *rw, size_t nrw);
/* seccomp allow-list by syscall name; default action kills the process, or
 * logs when log_only. Unknown names are an error (-EINVAL) naming the index
 * in *bad_index. */
/* In a seccomp allow-list: threads (clone with CLONE_THREAD; clone3 -> ENOSYS), never processes. */
#define MDATP_SECCOMP_THREADS "clone(threads)"
/* In a seccomp allow-list: ioctl(FS_IOC_GETVERSION) and no other ioctl. */
#define MDATP_SECCOMP_GETVERSION "ioctl(FS_IOC_GETVERSION)"
/* The inode's i_generation (FS_IOC_GETVERSION); -errno where the filesystem has none. */
int mdatp_inode_generation(int fd, unsigned *generation);
/* fanotify exec gate: a group for FAN_OPEN_EXEC_PERM (needs CAP_SYS_ADMIN),
 * marked per filesystem; events read and answered by an unprivileged holder. */
struct mdatp_fanotify_event {
	unsigned long long mask;
	int fd;
	int pid;
};
#define MDATP_FAN_OPEN_EXEC_PERM 0x00040000ull
int mdatp_fanotify_exec_gate(void);
int mdatp_fanotify_mark_exec(int fd, const char *path);
int mdatp_fanotify_ignore_exec(int fd, const char *path);
int mdatp_fanotify_flush_filesystems(int fd);
long mdatp_fanotify_read(int fd, struct mdatp_fanotify_event *events, size_t max);
int mdatp_fanotify_respond(int fd, int event_fd, int allow);

/* Starts `path` in a forked child with descriptors src[i] at dst[i], signals
 * reset, and returns at once (an exec failure shows as exit code 127). */
pid_t mdatp_spawn_nowait(const char *path, char *const argv[], char *const envp[], const int *src, const int *dst, size_t n);

int mdatp_seccomp_allow(const char *const *names, size_t n, int log_only, size_t *bad_index);
/* A syscall no room allows: personality(0xffffffff) only queries, so it is
 * harmless where no filter is installed. */
long mdatp_forbidden_syscall_probe(void);

/* ---- credentials (GNU extensions Swift's Glibc does not import) */
int mdatp_setresuid(uint32_t uid);
int mdatp_setresgid(uint32_t gid);
int mdatp_getresuid(uint32_t *r, uint32_t *e, uint32_t *s);
int mdatp_getresgid(uint32_t *r, uint32_t *e, uint32_t *s);
int mdatp_accept4(int fd, int flags);

/* openat2(dirfd, path, flags, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS):
 * no symlink anywhere in the path is followed. -errno (ENOSYS before 5.6). */
int mdatp_openat_no_symlinks(int dirfd, const char *path, int flags, unsigned mode);

/* getrandom(2), blocking until the pool is ready; bytes written or -errno. */
long mdatp_getrandom(void *buf, size_t n);

/* The filesystem magic of an open file (statfs.f_type), or -errno. */
long mdatp_fstatfs_type(int fd);

/* ---- signals */
/* Blocks the given signals and returns a signalfd for them (non-blocking). */
int mdatp_signalfd(const int *signals, size_t n);
/* Reads one signal number from a signalfd; 0 when none is pending. */
int mdatp_signalfd_read(int fd);

/* ---- sockets */
long mdatp_send_with_fd(int sock, const void *buf, size_t len, int fd, int nowait);
/* Receives one message and at most one descriptor (*fd_out = -1 when none;
 * extra descriptors are closed). */
long mdatp_recv_with_fd(int sock, void *buf, size_t len, int *fd_out);
int mdatp_peer_cred(int sock, uint32_t *pid, uint32_t *uid, uint32_t *gid);

#endif
