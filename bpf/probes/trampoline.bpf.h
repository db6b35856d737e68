/* Trampoline-family programs (fentry, BPF LSM). The loader probes the kernel
 * at start and loads these only where it allows them (this project's own CI
 * host refuses trampolines; stock Debian kernels allow them): each replaces
 * or strengthens a tracepoint-family program with the same record, so
 * consumers never see which family produced an event. */

#define MDATP_EPERM 1

/* close-after-write where fanotify sees it (FAN_CLOSE_WRITE comes from
 * __fput): when the last reference to the open file goes, on every path that
 * drops one -- close(2), close_range, dup2 over an open fd, process exit,
 * io_uring. Not filp_close: since 6.8 close(2) no longer calls it (the matrix
 * caught that on 6.12). Replaces syscalls/sys_enter_close where loaded. */
SEC("fentry/__fput")
int BPF_PROG(fentry_fput, struct file *f)
{
	emit_close_write(f);
	return 0;
}

/* The record of an exec the LSM refused: the caller's ids, the executable's
 * identity and path, the cwd, and the file name the caller asked for (the new
 * argv is in an mm that is not the caller's yet). */
static __always_inline void emit_refused_exec(struct scratch *s, struct linux_binprm *bprm, struct file *exe, struct inode *ino)
{
	struct mdatp_exec_event *e = (void *)s->event;
	struct task_struct *task = current_task();
	fill_header(&e->h, MDATP_EV_EXEC, 0);
	e->h.flags |= MDATP_F_EXEC_BLOCKED | MDATP_F_EXEC_REFUSED | MDATP_F_ARGV_TRUNCATED;
	fill_exec_fixed(e, task, bprm, ino);
	__u32 off = fill_exec_paths(s, e, task, exe);
	e->tty_len = 0;
	const char *filename = BPF_CORE_READ(bprm, filename);
	long t = bpf_probe_read_kernel_str(&s->event[off & EV_MASK], MDATP_NAME_MAX, filename);
	e->argv_len = t > 0 ? (__u32)t : 0;
	off += e->argv_len;
	emit(s, align8(off));
}

/* A denied executable is refused before its image is loaded: execve returns
 * EPERM and nothing of it runs (the tp_btf SIGKILL stays as a second line). */
SEC("lsm/bprm_check_security")
int BPF_PROG(lsm_exec_deny, struct linux_binprm *bprm, int ret)
{
	if (ret != 0)
		return ret;
	struct file *exe = BPF_CORE_READ(bprm, file);
	if (!exe)
		return 0;
	struct inode *ino = BPF_CORE_READ(exe, f_inode);
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!exec_denied(BPF_CORE_READ(ino, i_ino), BPF_CORE_READ(ino, i_sb, s_dev), BPF_CORE_READ(ino, i_generation), tgid))
		return 0;
	__sync_fetch_and_add(&counters.exec_blocked, 1);
	struct scratch *s = get_scratch();
	if (s)
		emit_refused_exec(s, bprm, exe, ino);
	return -MDATP_EPERM;
}
