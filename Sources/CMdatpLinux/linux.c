#define _GNU_SOURCE
#include "mdatp_linux.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sched.h>
#include <sys/fanotify.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <linux/capability.h>
#include <linux/landlock.h>
#include <linux/openat2.h>

int mdatp_prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5)
{
	int rc = prctl(option, a2, a3, a4, a5);
	return rc < 0 ? -errno : rc;
}

int mdatp_fcntl_int(int fd, int cmd, int arg)
{
	int rc = fcntl(fd, cmd, arg);
	return rc < 0 ? -errno : rc;
}

int mdatp_memfd_create(const char *name, unsigned int flags)
{
	int rc = (int)syscall(SYS_memfd_create, name, flags);
	return rc < 0 ? -errno : rc;
}

int mdatp_eventfd(unsigned int initval, int flags)
{
	int rc = eventfd(initval, flags);
	return rc < 0 ? -errno : rc;
}

static int cap_last(void)
{
	int last = 40;
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	if (f) {
		if (fscanf(f, "%d", &last) != 1)
			last = 40;
		fclose(f);
	}
	return last > 63 ? 63 : last;
}

static int set_caps(uint64_t permitted_effective)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof(data));
	data[0].effective = data[0].permitted = (uint32_t)permitted_effective;
	data[1].effective = data[1].permitted = (uint32_t)(permitted_effective >> 32);
	if (syscall(SYS_capset, &hdr, data) < 0)
		return -errno;
	return 0;
}

int mdatp_drop_bounding_except(uint64_t keep)
{
	int last = cap_last();
	for (int c = 0; c <= last; c++) {
		if (keep & (1ull << c))
			continue;
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
			return -errno;
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return -errno;
	return 0;
}

int mdatp_drop_all_capabilities(void)
{
	/* The bounding set is trimmed earlier (mdatp_drop_bounding_except), while
	 * CAP_SETPCAP is still held; here only the process's own sets go. */
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return -errno;
	return set_caps(0);
}

int mdatp_keep_capabilities(const int *caps, size_t n)
{
	uint64_t keep = 0;
	for (size_t i = 0; i < n; i++) {
		if (caps[i] < 0 || caps[i] > 63)
			return -EINVAL;
		keep |= 1ull << caps[i];
	}
	return set_caps(keep);
}

int mdatp_capabilities_now(uint64_t *effective, uint64_t *permitted)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[2];
	if (syscall(SYS_capget, &hdr, data) < 0)
		return -errno;
	*effective = data[0].effective | ((uint64_t)data[1].effective << 32);
	*permitted = data[0].permitted | ((uint64_t)data[1].permitted << 32);
	return 0;
}

/* Filesystem rights by Landlock ABI version (1: base, 2: REFER, 3: TRUNCATE,
 * 5: IOCTL_DEV). */
static uint64_t landlock_fs_rights(int abi)
{
	uint64_t r = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |
		     LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
		     LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
		     LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
		     LANDLOCK_ACCESS_FS_MAKE_SYM;
	if (abi >= 2)
		r |= (1ull << 13); /* REFER */
	if (abi >= 3)
		r |= (1ull << 14); /* TRUNCATE */
	if (abi >= 5)
		r |= (1ull << 15); /* IOCTL_DEV */
	return r;
}

static int landlock_add(int ruleset, const char *path, uint64_t rights)
{
	int fd = open(path, O_PATH | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	struct landlock_path_beneath_attr attr = { .allowed_access = rights, .parent_fd = fd };
	/* Directory-only rights are refused on files. */
	if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode))
		attr.allowed_access &= LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
				       LANDLOCK_ACCESS_FS_READ_FILE | (1ull << 14) | (1ull << 15);
	long rc = syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &attr, 0);
	int e = errno;
	close(fd);
	return rc < 0 ? -e : 0;
}

int mdatp_landlock_restrict(const char *const *ro, size_t nro, const char *const *rw, size_t nrw)
{
	long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
	if (abi < 0)
		return -errno;
	uint64_t all = landlock_fs_rights((int)abi);
	struct landlock_ruleset_attr ra = { .handled_access_fs = all };
	int ruleset = (int)syscall(SYS_landlock_create_ruleset, &ra, sizeof(ra.handled_access_fs), 0);
	if (ruleset < 0)
		return -errno;
	uint64_t read = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
	int rc = 0;
	for (size_t i = 0; i < nro && rc == 0; i++)
		rc = landlock_add(ruleset, ro[i], read);
	for (size_t i = 0; i < nrw && rc == 0; i++)
		rc = landlock_add(ruleset, rw[i], all & ~(uint64_t)(LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_MAKE_CHAR |
								      LANDLOCK_ACCESS_FS_MAKE_BLOCK));
	if (rc == 0 && syscall(SYS_landlock_restrict_self, ruleset, 0) < 0)
		rc = -errno;
	close(ruleset);
	return rc == 0 ? (int)abi : rc;
}

int mdatp_seccomp_allow(const char *const *names, size_t n, int log_only, size_t *bad_index)
{
	scmp_filter_ctx ctx = seccomp_init(log_only ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS);
	if (!ctx)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		int rc;
		/* Threads, never processes: clone only with CLONE_THREAD, and clone3 (whose
		 * flags live in memory, out of the filter's reach) answered ENOSYS, which
		 * makes glibc's pthread_create fall back to clone. */
		if (strcmp(names[i], MDATP_SECCOMP_THREADS) == 0) {
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
			if (rc == 0)
				rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
			if (rc < 0) {
				*bad_index = i;
				seccomp_release(ctx);
				return rc;
			}
			continue;
		}
		/* One ioctl, not all: the inode's generation (deny-table identities). */
		if (strcmp(names[i], MDATP_SECCOMP_GETVERSION) == 0) {
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, SCMP_A1(SCMP_CMP_EQ, FS_IOC_GETVERSION));
			if (rc < 0) {
				*bad_index = i;
				seccomp_release(ctx);
				return rc;
			}
			continue;
		}
		int nr = seccomp_syscall_resolve_name(names[i]);
		if (nr == __NR_SCMP_ERROR) {
			*bad_index = i;
			seccomp_release(ctx);
			return -EINVAL;
		}
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
		if (rc < 0) {
			*bad_index = i;
			seccomp_release(ctx);
			return rc;
		}
	}
	int rc = seccomp_load(ctx);
	seccomp_release(ctx);
	return rc;
}

long mdatp_forbidden_syscall_probe(void)
{
	long rc = syscall(SYS_personality, 0xffffffffUL);
	return rc < 0 ? -errno : rc;
}

long mdatp_send_with_fd(int sock, const void *buf, size_t len, int fd, int nowait)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (fd >= 0) {
		memset(&u, 0, sizeof(u));
		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof(u.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	ssize_t rc = sendmsg(sock, &msg, MSG_NOSIGNAL | (nowait ? MSG_DONTWAIT : 0));
	return rc < 0 ? -errno : rc;
}

long mdatp_recv_with_fd(int sock, void *buf, size_t len, int *fd_out)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} u;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	*fd_out = -1;
	ssize_t rc = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	if (rc < 0)
		return -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		int fds[4];
		memcpy(fds, CMSG_DATA(c), nfds * sizeof(int));
		for (size_t i = 0; i < nfds; i++) {
			if (*fd_out < 0)
				*fd_out = fds[i];
			else
				close(fds[i]);
		}
	}
	if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		if (*fd_out >= 0)
			close(*fd_out);
		*fd_out = -1;
		return -EMSGSIZE;
	}
	return rc;
}

int mdatp_peer_cred(int sock, uint32_t *pid, uint32_t *uid, uint32_t *gid)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -errno;
	*pid = (uint32_t)cred.pid;
	*uid = cred.uid;
	*gid = cred.gid;
	return 0;
}

int mdatp_signalfd(const int *signals, size_t n)
{
	sigset_t set;
	sigemptyset(&set);
	for (size_t i = 0; i < n; i++)
		sigaddset(&set, signals[i]);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int mdatp_signalfd_read(int fd)
{
	struct signalfd_siginfo si;
	ssize_t n = read(fd, &si, sizeof(si));
	if (n != (ssize_t)sizeof(si))
		return 0;
	return (int)si.ssi_signo;
}

int mdatp_setresuid(uint32_t uid) { return setresuid(uid, uid, uid) < 0 ? -errno : 0; }
int mdatp_setresgid(uint32_t gid) { return setresgid(gid, gid, gid) < 0 ? -errno : 0; }
int mdatp_getresuid(uint32_t *r, uint32_t *e, uint32_t *s) { return getresuid(r, e, s) < 0 ? -errno : 0; }
int mdatp_getresgid(uint32_t *r, uint32_t *e, uint32_t *s) { return getresgid(r, e, s) < 0 ? -errno : 0; }
int mdatp_accept4(int fd, int flags) { int c = accept4(fd, NULL, NULL, flags); return c < 0 ? -errno : c; }

long mdatp_fstatfs_type(int fd)
{
	struct statfs fs;
	if (fstatfs(fd, &fs) < 0)
		return -errno;
	return (long)fs.f_type;
}

int mdatp_openat_no_symlinks(int dirfd, const char *path, int flags, unsigned mode)
{
	struct open_how how;
	memset(&how, 0, sizeof(how));
	how.flags = (unsigned long long)(flags | O_CLOEXEC);
	how.mode = (flags & O_CREAT) ? mode : 0;
	how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
	long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
	return fd < 0 ? -errno : (int)fd;
}

long mdatp_getrandom(void *buf, size_t n)
{
	ssize_t r = getrandom(buf, n, 0);
	return r < 0 ? -errno : r;
}

int mdatp_inode_generation(int fd, unsigned *generation)
{
	long v = 0;
	if (ioctl(fd, FS_IOC_GETVERSION, &v) < 0)
		return -errno;
	*generation = (unsigned)v;
	return 0;
}

int mdatp_fanotify_exec_gate(void)
{
	/* Non-blocking (the watchdog polls it); files opened read-only, without atime. */
	int fd = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK, O_RDONLY | O_LARGEFILE | O_CLOEXEC | O_NOATIME);
	return fd < 0 ? -errno : fd;
}

int mdatp_fanotify_mark_exec(int fd, const char *path)
{
	return fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN_EXEC_PERM, AT_FDCWD, path) < 0 ? -errno : 0;
}

int mdatp_fanotify_ignore_exec(int fd, const char *path)
{
	return fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY, FAN_OPEN_EXEC_PERM,
			     AT_FDCWD, path) < 0 ? -errno : 0;
}

int mdatp_fanotify_flush_filesystems(int fd)
{
	return fanotify_mark(fd, FAN_MARK_FLUSH | FAN_MARK_FILESYSTEM, 0, AT_FDCWD, "/") < 0 ? -errno : 0;
}

long mdatp_fanotify_read(int fd, struct mdatp_fanotify_event *events, size_t max)
{
	char buf[4096] __attribute__((aligned(8)));
	ssize_t n = read(fd, buf, sizeof buf);
	if (n < 0)
		return -errno;
	size_t count = 0;
	struct fanotify_event_metadata *m = (struct fanotify_event_metadata *)buf;
	while (FAN_EVENT_OK(m, n) && count < max) {
		if (m->vers == FANOTIFY_METADATA_VERSION) {
			events[count].mask = m->mask;
			events[count].fd = m->fd;
			events[count].pid = m->pid;
			count++;
		} else if (m->fd >= 0) {
			close(m->fd);
		}
		m = FAN_EVENT_NEXT(m, n);
	}
	return (long)count;
}

int mdatp_fanotify_respond(int fd, int event_fd, int allow)
{
	struct fanotify_response r = { .fd = event_fd, .response = allow ? FAN_ALLOW : FAN_DENY };
	return write(fd, &r, sizeof r) == (ssize_t)sizeof r ? 0 : -errno;
}

pid_t mdatp_spawn_nowait(const char *path, char *const argv[], char *const envp[], const int *src, const int *dst, size_t n)
{
	/* fork, not vfork: the parent must not wait for the child's exec, which the
	 * exec gate may hold until the parent relays a verdict. The child only makes
	 * async-signal-safe calls. */
	if (n > 64)
		return -EINVAL;
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0)
		return pid;
	sigset_t none;
	sigemptyset(&none);
	for (int s = 1; s < 65; s++)
		signal(s, SIG_DFL);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Sources first to spare descriptors (200+i), so a target never clobbers a source. */
	for (size_t i = 0; i < n; i++)
		if (dup2(src[i], 200 + (int)i) < 0)
			_exit(127);
	for (size_t i = 0; i < n; i++) {
		if (dup2(200 + (int)i, dst[i]) < 0)
			_exit(127);
		close(200 + (int)i);
	}
	execve(path, argv, envp);
	_exit(127);
}
