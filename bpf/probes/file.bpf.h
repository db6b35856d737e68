/* File events: create, open-for-write, close-after-write, rename, unlink,
 * chmod, chown. Syscall tracepoints: exit for results (fd, success), enter
 * only where the exit needs the arguments. */

/* Builds and emits a file record for an open struct file. */
static __always_inline void emit_open_file(struct scratch *s, __u16 type, struct file *f)
{
	struct mdatp_file_event *e = (void *)s->event;
	fill_header(&e->h, type, 0);
	struct inode *ino = BPF_CORE_READ(f, f_inode);
	e->mode = BPF_CORE_READ(ino, i_mode);
	e->owner_uid = BPF_CORE_READ(ino, i_uid.val);
	e->owner_gid = BPF_CORE_READ(ino, i_gid.val);
	e->dev = BPF_CORE_READ(ino, i_sb, s_dev);
	e->ino = BPF_CORE_READ(ino, i_ino);
	e->open_flags = BPF_CORE_READ(f, f_flags);
	e->path2_len = 0;
	bool trunc = false;
	__u32 off = sizeof(*e);
	__u32 n = fill_path(s, off, __builtin_preserve_access_index(&f->f_path), &trunc);
	if (trunc)
		e->h.flags |= MDATP_F_PATH_TRUNCATED;
	e->path_len = n;
	if (filtered_path(s, off, n))
		return;
	emit(s, align8(off + n));
}

/* A regular file open for writing, by a process that is neither the suite nor excluded. */
static __always_inline bool reportable_write(struct file *f, __u32 fmode)
{
	if (!(fmode & FMODE_WRITE))
		return false;
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFREG)
		return false;
	return !filtered_actor();
}

/* The loader's calibration opens (see maps.h): record f_mode, nothing else. */
static __always_inline bool calibration_open(struct file *f)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (calib_tgid == 0 || tgid != calib_tgid)
		return false;
	__u32 i = calib_count;
	if (i < 2) {
		calib_fmode[i & 1] = BPF_CORE_READ(f, f_mode);
		calib_count = i + 1;
	}
	return true;
}

/* Is this file one the collector watches for reads? */
static __always_inline bool watched_file(struct file *f)
{
	struct inode *ino = BPF_CORE_READ(f, f_inode);
	__u64 i_ino = BPF_CORE_READ(ino, i_ino);
	__u32 dev = BPF_CORE_READ(ino, i_sb, s_dev);
#pragma unroll
	for (int i = 0; i < MDATP_WATCH_SLOTS; i++) {
		if (*(volatile __u32 *)&watched_files[i].state == MDATP_WATCH_VALID && watched_files[i].ino == i_ino &&
		    watched_files[i].dev == dev)
			return true;
	}
	return false;
}

/* Every successful open that may write a regular file, and read opens of watched files. */
static __always_inline int on_open_exit(struct trace_event_raw_sys_exit *ctx)
{
	long fd = ctx->ret;
	if (fd < 0)
		return 0;
	struct file *f = read_fd_file(current_task(), fd);
	if (!f)
		return 0;
	if (calibration_open(f))
		return 0;
	__u32 fmode = BPF_CORE_READ(f, f_mode);
	if (!(fmode & FMODE_WRITE)) {
		if (!watched_file(f) || filtered_actor())
			return 0;
		struct scratch *s = get_scratch();
		if (s)
			emit_open_file(s, MDATP_EV_FILE_OPEN_READ, f);
		return 0;
	}
	if (!reportable_write(f, fmode))
		return 0;
	struct scratch *s = get_scratch();
	if (!s)
		return 0;
	__u32 created = fmode_created_mask;
	emit_open_file(s, (created && (fmode & created)) ? MDATP_EV_FILE_CREATE : MDATP_EV_FILE_OPEN_WRITE, f);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int exit_openat(struct trace_event_raw_sys_exit *ctx) { return on_open_exit(ctx); }
SEC("tracepoint/syscalls/sys_exit_openat2")
int exit_openat2(struct trace_event_raw_sys_exit *ctx) { return on_open_exit(ctx); }
SEC("tracepoint/syscalls/sys_exit_open")
int exit_open(struct trace_event_raw_sys_exit *ctx) { return on_open_exit(ctx); }
SEC("tracepoint/syscalls/sys_exit_creat")
int exit_creat(struct trace_event_raw_sys_exit *ctx) { return on_open_exit(ctx); }

/* close of a regular file opened for writing: what fanotify calls
 * FAN_CLOSE_WRITE and the on-access scanner waits for. Enter, because after
 * the close the fd no longer names the file. */
static __always_inline void emit_close_write(struct file *f)
{
	if (!f || !reportable_write(f, BPF_CORE_READ(f, f_mode)))
		return;
	struct scratch *s = get_scratch();
	if (s)
		emit_open_file(s, MDATP_EV_FILE_CLOSE_WRITE, f);
}

SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(struct trace_event_raw_sys_enter *ctx)
{
	emit_close_write(read_fd_file(current_task(), ctx->args[0]));
	return 0;
}

/* Emits a record for a path-based file syscall that succeeded.
 * dirfd/upath: the (first) path; dirfd2/upath2: rename's target or none. */
static __always_inline void emit_path_event(__u16 type, long dirfd, const char *upath, long dirfd2,
					    const char *upath2, __u32 mode, __u32 uid, __u32 gid)
{
	struct scratch *s = get_scratch();
	if (!s)
		return;
	struct mdatp_file_event *e = (void *)s->event;
	fill_header(&e->h, type, 0);
	e->mode = mode;
	e->owner_uid = uid;
	e->owner_gid = gid;
	e->dev = 0;
	e->ino = 0;
	e->open_flags = 0;
	__u32 off = sizeof(*e);
	bool trunc = false, rel = false;
	__u32 n = fill_user_path(s, off, dirfd, upath, &trunc, &rel);
	if (trunc)
		e->h.flags |= MDATP_F_PATH_TRUNCATED;
	e->path_len = n;
	e->path2_len = 0;
	if (upath2) {
		bool trunc2 = false;
		__u32 n2 = fill_user_path(s, off + n, dirfd2, upath2, &trunc2, &rel);
		if (trunc2)
			e->h.flags |= MDATP_F_PATH2_TRUNCATED;
		e->path2_len = n2;
		n += n2;
	}
	if (rel)
		e->h.flags |= MDATP_F_PATH_RELATIVE;
	if (filtered_path(s, off, e->path_len))
		return;
	emit(s, align8(off + n));
}

/* fd-based chmod/chown: the path comes from the open file. */
static __always_inline void emit_fd_attr_event(__u16 type, long fd, __u32 mode, __u32 uid, __u32 gid)
{
	struct file *f = read_fd_file(current_task(), fd);
	if (!f)
		return;
	struct scratch *s = get_scratch();
	if (!s)
		return;
	/* At sys_exit the inode already carries the new mode/owner. */
	emit_open_file(s, type, f);
}

#define EXIT_PATH_SYSCALL(name, body)                                          \
	SEC("tracepoint/syscalls/sys_exit_" #name)                             \
	int exit_##name(struct trace_event_raw_sys_exit *ctx)                 \
	{                                                                      \
		struct syscall_args a;                                         \
		if (!take_args(&a) || ctx->ret != 0)                           \
			return 0;                                              \
		body;                                                          \
		return 0;                                                      \
	}

#define UPTR(i) ((const char *)a.args[i])
#define NO_ID 0xffffffffu

ENTER_STASH_FILTERED(rename, 2)
EXIT_PATH_SYSCALL(rename, emit_path_event(MDATP_EV_FILE_RENAME, AT_FDCWD, UPTR(0), AT_FDCWD, UPTR(1), 0, NO_ID, NO_ID))
ENTER_STASH_FILTERED(renameat, 4)
EXIT_PATH_SYSCALL(renameat, emit_path_event(MDATP_EV_FILE_RENAME, (int)a.args[0], UPTR(1), (int)a.args[2], UPTR(3), 0, NO_ID, NO_ID))
ENTER_STASH_FILTERED(renameat2, 5)
EXIT_PATH_SYSCALL(renameat2, emit_path_event(MDATP_EV_FILE_RENAME, (int)a.args[0], UPTR(1), (int)a.args[2], UPTR(3), 0, NO_ID, NO_ID))

ENTER_STASH_FILTERED(unlink, 1)
EXIT_PATH_SYSCALL(unlink, emit_path_event(MDATP_EV_FILE_UNLINK, AT_FDCWD, UPTR(0), 0, NULL, 0, NO_ID, NO_ID))
ENTER_STASH_FILTERED(unlinkat, 3)
EXIT_PATH_SYSCALL(unlinkat, emit_path_event(MDATP_EV_FILE_UNLINK, (int)a.args[0], UPTR(1), 0, NULL, 0, NO_ID, NO_ID))
ENTER_STASH_FILTERED(rmdir, 1)
EXIT_PATH_SYSCALL(rmdir, emit_path_event(MDATP_EV_FILE_UNLINK, AT_FDCWD, UPTR(0), 0, NULL, 0040000, NO_ID, NO_ID))

ENTER_STASH_FILTERED(chmod, 2)
EXIT_PATH_SYSCALL(chmod, emit_path_event(MDATP_EV_FILE_CHMOD, AT_FDCWD, UPTR(0), 0, NULL, (__u32)a.args[1], NO_ID, NO_ID))
ENTER_STASH_FILTERED(fchmodat, 3)
EXIT_PATH_SYSCALL(fchmodat, emit_path_event(MDATP_EV_FILE_CHMOD, (int)a.args[0], UPTR(1), 0, NULL, (__u32)a.args[2], NO_ID, NO_ID))
ENTER_STASH_FILTERED(fchmodat2, 4)
EXIT_PATH_SYSCALL(fchmodat2, emit_path_event(MDATP_EV_FILE_CHMOD, (int)a.args[0], UPTR(1), 0, NULL, (__u32)a.args[2], NO_ID, NO_ID))
ENTER_STASH_FILTERED(fchmod, 2)
EXIT_PATH_SYSCALL(fchmod, emit_fd_attr_event(MDATP_EV_FILE_CHMOD, (int)a.args[0], (__u32)a.args[1], NO_ID, NO_ID))

ENTER_STASH_FILTERED(chown, 3)
EXIT_PATH_SYSCALL(chown, emit_path_event(MDATP_EV_FILE_CHOWN, AT_FDCWD, UPTR(0), 0, NULL, 0, (__u32)a.args[1], (__u32)a.args[2]))
ENTER_STASH_FILTERED(lchown, 3)
EXIT_PATH_SYSCALL(lchown, emit_path_event(MDATP_EV_FILE_CHOWN, AT_FDCWD, UPTR(0), 0, NULL, 0, (__u32)a.args[1], (__u32)a.args[2]))
ENTER_STASH_FILTERED(fchownat, 5)
EXIT_PATH_SYSCALL(fchownat, emit_path_event(MDATP_EV_FILE_CHOWN, (int)a.args[0], UPTR(1), 0, NULL, 0, (__u32)a.args[2], (__u32)a.args[3]))
ENTER_STASH_FILTERED(fchown, 3)
EXIT_PATH_SYSCALL(fchown, emit_fd_attr_event(MDATP_EV_FILE_CHOWN, (int)a.args[0], 0, (__u32)a.args[1], (__u32)a.args[2]))
