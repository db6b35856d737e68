/* Helpers in three layers, each only calling the one below:
 *   read  - pull one fact out of kernel or user memory (task, fd, dentry walk)
 *   fill  - write a record's fixed fields and append its variable data
 *   emit  - stamp the sequence number, output to a ring, count
 * Programs (the probes/ headers) use fill and emit only. */
#ifndef MDATP_HELPERS_H
#define MDATP_HELPERS_H

#define AF_INET 2
#define AF_INET6 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define S_IFREG 0100000
#define S_IFCHR 0020000
#define S_IFIFO 0010000
#define S_ISUID 0004000
#define S_ISGID 0002000
#define AT_FDCWD -100
#define FMODE_WRITE 0x2
#define EINPROGRESS 115
#define PATH_END (MDATP_PATH_MAX - 1)
#define EV_MASK (MDATP_EVENT_MAX - 1)
#define PATH_MASK (MDATP_PATH_MAX - 1)
#define WAKEUP_BACKLOG_PROCESS (16 << 10)
#define WAKEUP_BACKLOG_ACTIVITY (256 << 10)

/* ---------------------------------------------------------------- read */

static __always_inline struct scratch *get_scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&scratch_map, &zero);
}

static __always_inline struct path_scratch *get_path_scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&path_scratch_map, &zero);
}

static __always_inline struct task_struct *current_task(void)
{
	return (struct task_struct *)bpf_get_current_task();
}

static __always_inline bool current_is_suite(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	return bpf_map_lookup_elem(&suite_tgids, &tgid) != NULL;
}

static __always_inline bool current_is_excluded(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	return bpf_map_lookup_elem(&excluded_tgids, &tgid) != NULL;
}

/* The struct file behind a descriptor of a task, or NULL. */
static __always_inline struct file *read_fd_file(struct task_struct *task, long fd)
{
	if (fd < 0)
		return NULL;
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt)
		return NULL;
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	if ((unsigned long)fd >= max)
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

static __always_inline struct sock *read_fd_sock(struct task_struct *task, long fd)
{
	struct file *f = read_fd_file(task, fd);
	if (!f)
		return NULL;
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *so = BPF_CORE_READ(f, private_data);
	return BPF_CORE_READ(so, sk);
}

static __always_inline struct mount *real_mount(struct vfsmount *vfsmnt)
{
	return (struct mount *)((void *)vfsmnt - bpf_core_field_offset(struct mount, mnt));
}

/* Older kernels kept inode times as struct timespec64 (i_mtime, then __i_mtime). */
struct inode___pre67 {
	struct timespec64 __i_mtime;
} __attribute__((preserve_access_index));
struct inode___pre66 {
	struct timespec64 i_mtime;
} __attribute__((preserve_access_index));

static __always_inline void read_inode_mtime(struct inode *ino, __s64 *sec, __u32 *nsec)
{
	if (bpf_core_field_exists(ino->i_mtime_sec)) {
		*sec = BPF_CORE_READ(ino, i_mtime_sec);
		*nsec = BPF_CORE_READ(ino, i_mtime_nsec);
	} else if (bpf_core_field_exists(((struct inode___pre67 *)ino)->__i_mtime)) {
		struct inode___pre67 *o = (void *)ino;
		*sec = BPF_CORE_READ(o, __i_mtime.tv_sec);
		*nsec = BPF_CORE_READ(o, __i_mtime.tv_nsec);
	} else {
		struct inode___pre66 *o = (void *)ino;
		*sec = BPF_CORE_READ(o, i_mtime.tv_sec);
		*nsec = BPF_CORE_READ(o, i_mtime.tv_nsec);
	}
}

/* Path walk: components are written backwards into scratch->path, ending at
 * PATH_END, crossing mounts up to the global root. Bounded by
 * MDATP_PATH_DEPTH components and MDATP_PATH_MAX bytes (bpf_loop keeps the
 * verifier's work constant whatever the depth). */
struct walk_ctx {
	struct dentry *dentry;
	struct mount *mnt;
	struct dentry *mnt_root; /* of mnt: read once per mount, not per component */
	__u32 pos;
	__u32 done;
};

static long walk_step(__u32 index, void *data)
{
	struct walk_ctx *c = data;
	struct path_scratch *s = get_path_scratch();
	if (!s)
		return 1;
	struct dentry *d = c->dentry;
	struct dentry *parent = BPF_CORE_READ(d, d_parent);
	if (d == c->mnt_root || d == parent) {
		if (d != c->mnt_root) { /* root of a detached tree */
			c->done = 1;
			return 1;
		}
		struct mount *m = c->mnt;
		struct mount *mp = BPF_CORE_READ(m, mnt_parent);
		if (!mp || mp == m) { /* the global root */
			c->done = 1;
			return 1;
		}
		c->dentry = BPF_CORE_READ(m, mnt_mountpoint);
		c->mnt = mp;
		c->mnt_root = BPF_CORE_READ(mp, mnt.mnt_root);
		return 0;
	}
	/* One read for the name's length and pointer. */
	struct qstr q;
	if (bpf_core_read(&q, sizeof(q), &d->d_name))
		return 1;
	__u32 len = q.len;
	if (len > 255)
		len = 255;
	if (len + 1 > c->pos)
		return 1; /* out of room: truncated */
	__u32 pos = c->pos - len;
	bpf_probe_read_kernel(&s->path[pos & PATH_MASK], len & 255, q.name);
	pos -= 1;
	s->path[pos & PATH_MASK] = '/';
	c->pos = pos;
	c->dentry = parent;
	return 0;
}

/* Walks p into path scratch; returns the start offset (path runs to PATH_END). */
static __always_inline __u32 read_path(struct path_scratch *s, const struct path *p, bool *truncated)
{
	struct walk_ctx c = {};
	c.dentry = BPF_CORE_READ(p, dentry);
	struct vfsmount *vfsmnt = BPF_CORE_READ(p, mnt);
	c.mnt = real_mount(vfsmnt);
	c.mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
	c.pos = PATH_END;
	s->path[PATH_END] = 0;
	if (!c.dentry || !c.mnt) {
		*truncated = true;
		return PATH_END;
	}
	bpf_loop(MDATP_PATH_DEPTH, walk_step, &c, 0);
	if (!c.done)
		*truncated = true;
	if (c.pos >= PATH_END) {
		c.pos = PATH_END - 1;
		s->path[c.pos & PATH_MASK] = '/';
	}
	return c.pos;
}

/* ---------------------------------------------------------------- fill */

static __always_inline void fill_header(struct mdatp_event_header *h, __u16 type, __u32 size)
{
	struct task_struct *task = current_task();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();
	h->type = type;
	h->flags = 0;
	h->size = size;
	h->ktime_ns = bpf_ktime_get_boot_ns();
	h->pid = (__u32)pid_tgid;
	h->tgid = pid_tgid >> 32;
	h->uid = (__u32)uid_gid;
	h->euid = BPF_CORE_READ(task, cred, euid.val);
	h->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

/* Appends a walked path at ev[off]; returns its length. */
static __always_inline __u32 fill_path(struct scratch *s, __u32 off, const struct path *p, bool *truncated)
{
	struct path_scratch *ps = get_path_scratch();
	if (!ps) {
		*truncated = true;
		return 0;
	}
	__u32 start = read_path(ps, p, truncated);
	__u32 len = PATH_END - start;
	bpf_probe_read_kernel(&s->event[off & EV_MASK], len & PATH_MASK, &ps->path[start & PATH_MASK]);
	return len & PATH_MASK;
}

/* Appends the full path of (dirfd, upath) as the syscall saw it: upath when
 * absolute, else the walked directory (cwd for AT_FDCWD), '/', upath. */
static __always_inline __u32 fill_user_path(struct scratch *s, __u32 off, long dirfd, const char *upath,
					    bool *truncated, bool *relative)
{
	char first = 0;
	bpf_probe_read_user(&first, 1, upath);
	__u32 dirlen = 0;
	if (first != '/') {
		struct task_struct *task = current_task();
		const struct path *dir = NULL;
		if (dirfd == AT_FDCWD) {
			struct fs_struct *fs = BPF_CORE_READ(task, fs);
			dir = __builtin_preserve_access_index(&fs->pwd);
		} else {
			struct file *f = read_fd_file(task, dirfd);
			if (f)
				dir = __builtin_preserve_access_index(&f->f_path);
		}
		if (dir) {
			dirlen = fill_path(s, off, dir, truncated);
			if (dirlen > 1) { /* "/" needs no separator */
				s->event[(off + dirlen) & EV_MASK] = '/';
				dirlen += 1;
			}
		} else {
			*relative = true;
		}
	}
	dirlen &= PATH_MASK;
	__u32 room = MDATP_PATH_MAX - dirlen; /* 1 ... 4096 */
	room &= 0x1fff;
	long n = bpf_probe_read_user_str(&s->event[(off + dirlen) & EV_MASK], room, upath);
	if (n <= 0)
		return dirlen;
	if ((__u32)n >= room)
		*truncated = true;
	return (dirlen + (__u32)n - 1) & PATH_MASK; /* drop the NUL */
}

/* Appends a user string of at most max bytes; returns its length. */
static __always_inline __u32 fill_user_str(struct scratch *s, __u32 off, const char *ustr, __u32 max, bool *truncated)
{
	if (!ustr)
		return 0;
	long n = bpf_probe_read_user_str(&s->event[off & EV_MASK], max & PATH_MASK, ustr);
	if (n <= 0)
		return 0;
	if ((__u32)n >= max)
		*truncated = true;
	return ((__u32)n - 1) & PATH_MASK;
}

static __always_inline void fill_sock(struct mdatp_net_event *e, struct sock *sk)
{
	e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->protocol = BPF_CORE_READ(sk, sk_protocol);
	e->sock_type = BPF_CORE_READ(sk, sk_type);
	e->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (e->family == AF_INET) {
		__u32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 r = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(e->local_addr, &l, 4);
		__builtin_memcpy(e->remote_addr, &r, 4);
	} else if (e->family == AF_INET6) {
		BPF_CORE_READ_INTO(&e->local_addr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&e->remote_addr, sk, __sk_common.skc_v6_daddr);
	}
}

/* ---------------------------------------------------------------- emit */

static __always_inline __u32 class_of(__u16 type)
{
	if (type < 10)
		return MDATP_CLASS_PROCESS;
	if (type < 20)
		return MDATP_CLASS_FILE;
	if (type < 30)
		return MDATP_CLASS_NETWORK;
	return MDATP_CLASS_SENSITIVE;
}

/* Outputs s->event (size bytes) to its ring. The sequence number is taken
 * before output so a failed output shows as a gap as well as a count. */
static __always_inline void emit(struct scratch *s, __u32 size)
{
	struct mdatp_event_header *h = (void *)s->event;
	__u32 cls = class_of(h->type) & 3;
	bool lifecycle = cls == MDATP_CLASS_PROCESS;
	h->size = size;
	h->seq = __sync_fetch_and_add(&counters.ring_seq[lifecycle ? MDATP_RING_PROCESS : MDATP_RING_ACTIVITY], 1);
	/* Wakeups are batched: the collector polls every few milliseconds anyway,
	 * so a record only wakes it when a backlog has built up. */
	long err;
	if (lifecycle) {
		__u64 flags = bpf_ringbuf_query(&rb_process, BPF_RB_AVAIL_DATA) > WAKEUP_BACKLOG_PROCESS ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
		err = bpf_ringbuf_output(&rb_process, s->event, size & (MDATP_EVENT_MAX - 1), flags);
	} else {
		__u64 flags = bpf_ringbuf_query(&rb_activity, BPF_RB_AVAIL_DATA) > WAKEUP_BACKLOG_ACTIVITY ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
		err = bpf_ringbuf_output(&rb_activity, s->event, size & (MDATP_EVENT_MAX - 1), flags);
	}
	if (err)
		__sync_fetch_and_add(&counters.class_dropped[cls], 1);
	else
		__sync_fetch_and_add(&counters.class_emitted[cls], 1);
}

/* Pads a record to 8 bytes so every record in a ring starts aligned. */
static __always_inline __u32 align8(__u32 n)
{
	return (n + 7) & ~7u;
}

/* Suite and exclusion filter for file and network events. */
static __always_inline bool filtered_actor(void)
{
	if (current_is_suite()) {
		__sync_fetch_and_add(&counters.filtered_suite, 1);
		return true;
	}
	if (current_is_excluded()) {
		__sync_fetch_and_add(&counters.filtered_excluded, 1);
		return true;
	}
	return false;
}

/* Path-prefix exclusion on the first path of a file record at ev[off]. */
static __always_inline bool filtered_path(struct scratch *s, __u32 off, __u32 len)
{
	struct path_scratch *ps = get_path_scratch();
	if (!ps)
		return false;
	__u32 n = len;
	if (n > MDATP_EXCLUDE_PREFIX_MAX)
		n = MDATP_EXCLUDE_PREFIX_MAX;
	ps->prefix.prefixlen = n * 8;
	/* A constant size: older verifiers (6.1) lose the clamp of n on its way to
	 * the helper; the LPM lookup compares only prefixlen bits anyway. */
	bpf_probe_read_kernel(ps->prefix.data, MDATP_EXCLUDE_PREFIX_MAX, &s->event[off & EV_MASK]);
	if (bpf_map_lookup_elem(&excluded_prefixes, &ps->prefix)) {
		__sync_fetch_and_add(&counters.filtered_excluded, 1);
		return true;
	}
	return false;
}

/* ---------------------------------------------------------------- syscall args */

/* Reads only the first nargs arguments: a syscall tracepoint's record is as
 * long as its argument list, and attaching a program that reads past it is
 * refused (EACCES). nargs is a constant at every call site. */
static __always_inline void stash_args(struct trace_event_raw_sys_enter *ctx, int nargs)
{
	struct syscall_args a = {};
	a.nr = ctx->id;
	if (nargs > 0) a.args[0] = ctx->args[0];
	if (nargs > 1) a.args[1] = ctx->args[1];
	if (nargs > 2) a.args[2] = ctx->args[2];
	if (nargs > 3) a.args[3] = ctx->args[3];
	if (nargs > 4) a.args[4] = ctx->args[4];
	if (nargs > 5) a.args[5] = ctx->args[5];
	a.old_euid = BPF_CORE_READ(current_task(), cred, euid.val);
	__u64 id = bpf_get_current_pid_tgid();
	bpf_map_update_elem(&pending_syscalls, &id, &a, BPF_ANY);
}

/* Takes the stashed arguments of this thread's syscall (copied out, entry removed). */
static __always_inline bool take_args(struct syscall_args *out)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct syscall_args *a = bpf_map_lookup_elem(&pending_syscalls, &id);
	if (!a)
		return false;
	__builtin_memcpy(out, a, sizeof(*out));
	bpf_map_delete_elem(&pending_syscalls, &id);
	return true;
}

#define ENTER_STASH(name, nargs)                                               \
	SEC("tracepoint/syscalls/sys_enter_" #name)                            \
	int enter_##name(struct trace_event_raw_sys_enter *ctx)               \
	{                                                                      \
		stash_args(ctx, nargs);                                        \
		return 0;                                                      \
	}

/* Same, skipping the suite and excluded processes up front. */
#define ENTER_STASH_FILTERED(name, nargs)                                      \
	SEC("tracepoint/syscalls/sys_enter_" #name)                            \
	int enter_##name(struct trace_event_raw_sys_enter *ctx)               \
	{                                                                      \
		if (!current_is_suite() && !current_is_excluded())             \
			stash_args(ctx, nargs);                                \
		return 0;                                                      \
	}

#endif
