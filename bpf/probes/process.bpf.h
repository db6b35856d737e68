/* Process lifecycle: exec, fork, exit. All go to rb_process. */

struct deny_ctx {
	__u64 ino;
	__u32 dev;
	__u32 slot;
	__u32 generation;
	int found;
};

static long deny_probe(__u32 i, void *data)
{
	struct deny_ctx *c = data;
	__u32 idx = (c->slot + i) & (MDATP_DENY_SLOTS - 1);
	__u32 state = *(volatile __u32 *)&deny_table[idx].state;
	if (state == MDATP_DENY_EMPTY)
		return 1;
	if (state == MDATP_DENY_VALID) {
		if (deny_table[idx].ino == c->ino && deny_table[idx].dev == c->dev &&
		    (!(deny_table[idx].flags & MDATP_DENY_HAS_GENERATION) || deny_table[idx].generation == c->generation)) {
			c->found = 1;
			return 1;
		}
		return 0;
	}
	if (state != MDATP_DENY_REMOVED) { /* corrupt: ignore the table from here (fail open) */
		__sync_fetch_and_add(&counters.deny_corrupt, 1);
		return 1;
	}
	return 0;
}

/* Is this executable denied? Never for the suite's own processes. */
static __always_inline bool exec_denied(__u64 ino, __u32 dev, __u32 generation, __u32 tgid)
{
	if (!exec_blocking)
		return false;
	if (bpf_map_lookup_elem(&suite_tgids, &tgid))
		return false;
	struct deny_ctx c = { .ino = ino, .dev = dev, .slot = mdatp_deny_hash(ino, dev), .generation = generation, .found = 0 };
	bpf_loop(MDATP_DENY_PROBES, deny_probe, &c, 0);
	return c.found;
}

/* tmpfs (shmem, memfds too) or ramfs: files that exist only in memory. */
static __always_inline bool memory_filesystem(unsigned long magic)
{
	return magic == 0x01021994 || magic == 0x858458f6;
}

/* What descriptors 0-2 of the task are (enum mdatp_stdio_kind per nibble). */
static __always_inline __u32 stdio_kinds(struct task_struct *task)
{
	__u32 out = 0;
#pragma unroll
	for (int i = 0; i < 3; i++) {
		struct file *f = read_fd_file(task, i);
		__u32 k = MDATP_STDIO_NONE;
		if (f) {
			umode_t m = BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT;
			k = m == S_IFREG ? MDATP_STDIO_FILE : m == S_IFIFO ? MDATP_STDIO_PIPE : m == S_IFSOCK ? MDATP_STDIO_SOCKET
			    : m == S_IFCHR ? MDATP_STDIO_CHAR : MDATP_STDIO_OTHER;
		}
		out |= k << (4 * i);
	}
	return out;
}

/* The fixed part of an exec record, shared by both exec programs: the task's
 * ids and the executable's identity, mode and where it lives. */
static __always_inline void fill_exec_fixed(struct mdatp_exec_event *e, struct task_struct *task, struct linux_binprm *bprm,
					    struct inode *ino)
{
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->gid = BPF_CORE_READ(task, cred, gid.val);
	e->egid = BPF_CORE_READ(task, cred, egid.val);
	e->loginuid = BPF_CORE_READ(task, loginuid.val);
	e->sessionid = BPF_CORE_READ(task, sessionid);
	e->start_time_ns = BPF_CORE_READ(task, start_boottime);
	e->argc = BPF_CORE_READ(bprm, argc);
	e->stdio = stdio_kinds(task);
	e->exe_dev = BPF_CORE_READ(ino, i_sb, s_dev);
	e->exe_ino = BPF_CORE_READ(ino, i_ino);
	e->exe_mode = BPF_CORE_READ(ino, i_mode);
	read_inode_mtime(ino, &e->exe_mtime_sec, &e->exe_mtime_nsec);
	if (e->exe_mode & S_ISUID)
		e->h.flags |= MDATP_F_SETUID_EXEC;
	if (e->exe_mode & S_ISGID)
		e->h.flags |= MDATP_F_SETGID_EXEC;
	if (BPF_CORE_READ(ino, i_nlink) == 0)
		e->h.flags |= MDATP_F_EXE_DELETED;
	if (memory_filesystem(BPF_CORE_READ(ino, i_sb, s_magic)))
		e->h.flags |= MDATP_F_EXE_TMPFS;
}

/* The executable's path and the task's cwd after the fixed part; returns the
 * offset after them. */
static __always_inline __u32 fill_exec_paths(struct scratch *s, struct mdatp_exec_event *e, struct task_struct *task, struct file *exe)
{
	__u32 off = sizeof(*e);
	bool trunc = false;
	__u32 n = fill_path(s, off, __builtin_preserve_access_index(&exe->f_path), &trunc);
	if (trunc)
		e->h.flags |= MDATP_F_PATH_TRUNCATED;
	if (n == 1) {
		/* A file with no place in any tree (memfd, an anonymous mapping's file): its
		 * dentry is its own root, so the walk gives "/"; the name says what it is. */
		const unsigned char *name = BPF_CORE_READ(exe, f_path.dentry, d_name.name);
		long t = bpf_probe_read_kernel_str(&s->event[(off + 1) & EV_MASK], MDATP_NAME_MAX, name);
		if (t > 1)
			n = 1 + (__u32)(t - 1);
	}
	e->exe_len = n;
	off += n;

	trunc = false;
	struct fs_struct *fs = BPF_CORE_READ(task, fs);
	n = fill_path(s, off, __builtin_preserve_access_index(&fs->pwd), &trunc);
	if (trunc)
		e->h.flags |= MDATP_F_PATH2_TRUNCATED;
	e->cwd_len = n;
	return off + n;
}

/* sched_process_exec fires after the new image is committed and before it runs
 * its first instruction: the new mm holds argv, bprm->file is the executable.
 * It is also where a denied image is stopped: SIGKILL is pending before the
 * first user instruction, so none of its code runs. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct scratch *s = get_scratch();
	if (!s)
		return 0;
	struct mdatp_exec_event *e = (void *)s->event;
	struct task_struct *task = current_task();
	fill_header(&e->h, MDATP_EV_EXEC, 0);
	struct file *exe = BPF_CORE_READ(bprm, file);
	struct inode *ino = BPF_CORE_READ(exe, f_inode);
	fill_exec_fixed(e, task, bprm, ino);

	if (exec_denied(e->exe_ino, e->exe_dev, BPF_CORE_READ(ino, i_generation), e->h.tgid)) {
		bpf_send_signal(9);
		e->h.flags |= MDATP_F_EXEC_BLOCKED;
		__sync_fetch_and_add(&counters.exec_blocked, 1);
	}

	/* Global process exclusion follows the executable's identity. */
	struct mdatp_exe_key key = { .ino = e->exe_ino, .dev = e->exe_dev };
	__u32 tgid = e->h.tgid;
	if (bpf_map_lookup_elem(&excluded_exes, &key)) {
		__u8 one = 1;
		bpf_map_update_elem(&excluded_tgids, &tgid, &one, BPF_ANY);
	} else {
		bpf_map_delete_elem(&excluded_tgids, &tgid);
	}

	__u32 off = fill_exec_paths(s, e, task, exe);

	struct tty_struct *tty = BPF_CORE_READ(task, signal, tty);
	e->tty_len = 0;
	if (tty) {
		long t = bpf_probe_read_kernel_str(&s->event[off & EV_MASK], MDATP_TTY_MAX, tty->name);
		if (t > 1) {
			e->tty_len = t - 1;
			off += t - 1;
		}
	}

	/* argv lives in the new mm, just written by exec, so it is resident. */
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	unsigned long arg_start = BPF_CORE_READ(mm, arg_start);
	unsigned long arg_end = BPF_CORE_READ(mm, arg_end);
	__u32 alen = 0;
	if (arg_end > arg_start) {
		unsigned long want = arg_end - arg_start;
		alen = want > MDATP_ARGV_MAX ? MDATP_ARGV_MAX : want;
		if (want > MDATP_ARGV_MAX)
			e->h.flags |= MDATP_F_ARGV_TRUNCATED;
		if (bpf_probe_read_user(&s->event[off & EV_MASK], alen & 0x1fff, (void *)arg_start))
			alen = 0;
	}
	e->argv_len = alen;
	off += alen;
	emit(s, align8(off));
	return 0;
}

/* sched_process_fork: new processes only (threads share the process's record).
 * The suite's and excluded processes' marks are inherited here. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 child_pid = BPF_CORE_READ(child, pid);
	__u32 child_tgid = BPF_CORE_READ(child, tgid);
	if (child_pid != child_tgid)
		return 0;
	__u32 parent_tgid = BPF_CORE_READ(parent, tgid);
	__u8 one = 1;
	if (bpf_map_lookup_elem(&suite_tgids, &parent_tgid))
		bpf_map_update_elem(&suite_tgids, &child_tgid, &one, BPF_ANY);
	if (bpf_map_lookup_elem(&excluded_tgids, &parent_tgid))
		bpf_map_update_elem(&excluded_tgids, &child_tgid, &one, BPF_ANY);

	struct scratch *s = get_scratch();
	if (!s)
		return 0;
	struct mdatp_fork_event *e = (void *)s->event;
	fill_header(&e->h, MDATP_EV_FORK, 0);
	e->child_pid = child_pid;
	e->child_tgid = child_tgid;
	e->child_start_time_ns = BPF_CORE_READ(child, start_boottime);
	emit(s, sizeof(*e));
	return 0;
}

/* sched_process_exit fires per thread; the process is gone when signal->live
 * has dropped to zero (decremented before the tracepoint). */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *task)
{
	int live = BPF_CORE_READ(task, signal, live.counter);
	if (live != 0)
		return 0;
	__u32 tgid = BPF_CORE_READ(task, tgid);
	bpf_map_delete_elem(&suite_tgids, &tgid);
	bpf_map_delete_elem(&excluded_tgids, &tgid);

	struct scratch *s = get_scratch();
	if (!s)
		return 0;
	struct mdatp_exit_event *e = (void *)s->event;
	fill_header(&e->h, MDATP_EV_EXIT, 0);
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->exit_code = BPF_CORE_READ(task, exit_code);
	int group = BPF_CORE_READ(task, signal, group_exit_code);
	if (group != 0)
		e->exit_code = group;
	e->start_time_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	emit(s, sizeof(*e));
	return 0;
}
