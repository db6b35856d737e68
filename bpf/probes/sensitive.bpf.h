/* Sensitive operations: ptrace attach, module load, bpf() program load,
 * credential changes, memfd_create, mount, and signals sent to the suite.
 * Reported for every process, the suite's own included. */

#define PTRACE_TRACEME 0
#define PTRACE_ATTACH 16
#define PTRACE_SEIZE 0x4206
#define BPF_PROG_LOAD 5

static __always_inline struct mdatp_sensitive_event *begin_sensitive(struct scratch *s, __u16 type, long ret)
{
	struct mdatp_sensitive_event *e = (void *)s->event;
	__builtin_memset(e, 0, sizeof(*e));
	fill_header(&e->h, type, 0);
	e->ret = ret;
	const struct cred *cred = BPF_CORE_READ(current_task(), cred);
	e->new_uid = BPF_CORE_READ(cred, uid.val);
	e->new_euid = BPF_CORE_READ(cred, euid.val);
	e->new_gid = BPF_CORE_READ(cred, gid.val);
	e->new_egid = BPF_CORE_READ(cred, egid.val);
	return e;
}

/* Takes this thread's syscall arguments and, if the call succeeded (0, or a
 * descriptor when fd_result), starts a record of `type`; NULL otherwise. */
static __always_inline struct mdatp_sensitive_event *begin_on_success(struct trace_event_raw_sys_exit *ctx,
								      struct syscall_args *a, __u16 type, bool fd_result)
{
	if (!take_args(a))
		return NULL;
	if (fd_result ? ctx->ret < 0 : ctx->ret != 0)
		return NULL;
	struct scratch *s = get_scratch();
	if (!s)
		return NULL;
	return begin_sensitive(s, type, ctx->ret);
}

/* The record is the start of the per-CPU scratch. */
static __always_inline void emit_sensitive(struct mdatp_sensitive_event *e, __u32 size)
{
	emit((struct scratch *)e, size);
}

ENTER_STASH(ptrace, 4)
SEC("tracepoint/syscalls/sys_exit_ptrace")
int exit_ptrace(struct trace_event_raw_sys_exit *ctx)
{
	struct syscall_args a;
	if (!take_args(&a) || ctx->ret != 0)
		return 0;
	long req = a.args[0];
	if (req != PTRACE_ATTACH && req != PTRACE_SEIZE && req != PTRACE_TRACEME)
		return 0;
	struct scratch *s = get_scratch();
	if (!s)
		return 0;
	struct mdatp_sensitive_event *e = begin_sensitive(s, MDATP_EV_PTRACE, ctx->ret);
	e->arg[0] = req;
	e->target_pid = req == PTRACE_TRACEME ? BPF_CORE_READ(current_task(), real_parent, tgid) : (__u32)a.args[1];
	emit(s, sizeof(*e));
	return 0;
}

ENTER_STASH(finit_module, 3)
SEC("tracepoint/syscalls/sys_exit_finit_module")
int exit_finit_module(struct trace_event_raw_sys_exit *ctx)
{
	struct syscall_args a;
	struct mdatp_sensitive_event *e = begin_on_success(ctx, &a, MDATP_EV_MODULE_LOAD, false);
	if (!e)
		return 0;
	struct scratch *s = (struct scratch *)e;
	e->arg[0] = 1;
	__u32 off = sizeof(*e);
	struct file *f = read_fd_file(current_task(), (int)a.args[0]);
	if (f) {
		bool trunc = false;
		e->str1_len = fill_path(s, off, __builtin_preserve_access_index(&f->f_path), &trunc);
		if (trunc)
			e->h.flags |= MDATP_F_PATH_TRUNCATED;
	}
	emit(s, align8(off + e->str1_len));
	return 0;
}

ENTER_STASH(init_module, 3)
SEC("tracepoint/syscalls/sys_exit_init_module")
int exit_init_module(struct trace_event_raw_sys_exit *ctx)
{
	struct syscall_args a;
	struct mdatp_sensitive_event *e = begin_on_success(ctx, &a, MDATP_EV_MODULE_LOAD, false);
	if (!e)
		return 0;
	struct scratch *s = (struct scratch *)e;
	e->arg[0] = 0;
	e->arg[1] = a.args[1];
	emit(s, sizeof(*e));
	return 0;
}

ENTER_STASH(bpf, 3)
SEC("tracepoint/syscalls/sys_exit_bpf")
int exit_bpf(struct trace_event_raw_sys_exit *ctx)
{
	struct syscall_args a;
	if (!take_args(&a) || ctx->ret < 0 || a.args[0] != BPF_PROG_LOAD)
		return 0;
	struct scratch *s = get_scratch();
	if (!s)
		return 0;
	struct mdatp_sensitive_event *e = begin_sensitive(s, MDATP_EV_BPF_LOAD, ctx->ret);
	union bpf_attr *uattr = (void *)a.args[1];
	__u32 prog_type = 0, insn_cnt = 0;
	bpf_probe_read_user(&prog_type, 4, &uattr->prog_type);
	bpf_probe_read_user(&insn_cnt, 4, &uattr->insn_cnt);
	e->arg[0] = prog_type;
	e->arg[1] = insn_cnt;
	__u32 off = sizeof(*e);
	char *name = (char *)&s->event[off & EV_MASK];
	if (bpf_probe_read_user(name, 16, uattr->prog_name) == 0) {
		__u32 n = 0;
		for (int i = 0; i < 16; i++) {
			if (name[i] == 0)
				break;
			n++;
		}
		e->str1_len = n;
	}
	emit(s, align8(off + e->str1_len));
	return 0;
}

/* Credential changes: reported with what was asked and what resulted. */
static __always_inline int on_cred_exit(struct trace_event_raw_sys_exit *ctx, __u32 op)
{
	struct syscall_args a;
	struct mdatp_sensitive_event *e = begin_on_success(ctx, &a, MDATP_EV_CRED_CHANGE, false);
	if (!e)
		return 0;
	struct scratch *s = (struct scratch *)e;
	e->arg[0] = op;
	if (op == MDATP_CRED_CAPSET) {
		/* struct __user_cap_data_struct[0]: effective, permitted, inheritable */
		__u32 caps[3] = {};
		bpf_probe_read_user(caps, sizeof(caps), (void *)a.args[1]);
		e->arg[1] = caps[0];
		e->arg[2] = caps[1];
		e->arg[3] = caps[2];
	} else {
		e->arg[1] = (__u32)a.args[0];
		e->arg[2] = (__u32)a.args[1];
		e->arg[3] = (__u32)a.args[2];
	}
	e->target_pid = a.old_euid; /* the euid before the call */
	emit(s, sizeof(*e));
	return 0;
}

#define CRED_SYSCALL(name, op, nargs)                                          \
	ENTER_STASH(name, nargs)                                               \
	SEC("tracepoint/syscalls/sys_exit_" #name)                             \
	int exit_##name(struct trace_event_raw_sys_exit *ctx) { return on_cred_exit(ctx, op); }

CRED_SYSCALL(setuid, MDATP_CRED_SETUID, 1)
CRED_SYSCALL(setgid, MDATP_CRED_SETGID, 1)
CRED_SYSCALL(setreuid, MDATP_CRED_SETREUID, 2)
CRED_SYSCALL(setregid, MDATP_CRED_SETREGID, 2)
CRED_SYSCALL(setresuid, MDATP_CRED_SETRESUID, 3)
CRED_SYSCALL(setresgid, MDATP_CRED_SETRESGID, 3)
CRED_SYSCALL(capset, MDATP_CRED_CAPSET, 2)

ENTER_STASH(memfd_create, 2)
SEC("tracepoint/syscalls/sys_exit_memfd_create")
int exit_memfd_create(struct trace_event_raw_sys_exit *ctx)
{
	struct syscall_args a;
	struct mdatp_sensitive_event *e = begin_on_success(ctx, &a, MDATP_EV_MEMFD_CREATE, true);
	if (!e)
		return 0;
	struct scratch *s = (struct scratch *)e;
	e->arg[0] = a.args[1];
	e->arg[1] = ctx->ret;
	bool trunc = false;
	__u32 off = sizeof(*e);
	e->str1_len = fill_user_str(s, off, (const char *)a.args[0], MDATP_NAME_MAX, &trunc);
	if (trunc)
		e->h.flags |= MDATP_F_STR_TRUNCATED;
	emit(s, align8(off + e->str1_len));
	return 0;
}

ENTER_STASH(mount, 5)
SEC("tracepoint/syscalls/sys_exit_mount")
int exit_mount(struct trace_event_raw_sys_exit *ctx)
{
	struct syscall_args a;
	struct mdatp_sensitive_event *e = begin_on_success(ctx, &a, MDATP_EV_MOUNT, false);
	if (!e)
		return 0;
	struct scratch *s = (struct scratch *)e;
	e->arg[0] = a.args[3];
	bool trunc = false, rel = false;
	__u32 off = sizeof(*e);
	__u32 n1 = fill_user_str(s, off, (const char *)a.args[0], MDATP_NAME_MAX, &trunc);
	__u32 n2 = fill_user_path(s, off + n1, AT_FDCWD, (const char *)a.args[1], &trunc, &rel);
	__u32 n3 = fill_user_str(s, off + n1 + n2, (const char *)a.args[2], MDATP_NAME_MAX, &trunc);
	e->str1_len = n1;
	e->str2_len = n2;
	e->str3_len = n3;
	if (trunc)
		e->h.flags |= MDATP_F_STR_TRUNCATED;
	emit(s, align8(off + n1 + n2 + n3));
	return 0;
}

/* Signals aimed at a process of the suite: reported at the attempt. */
static __always_inline void signal_to_suite(__u32 target, long sig)
{
	if (sig == 0 || bpf_map_lookup_elem(&suite_tgids, &target) == NULL)
		return;
	struct scratch *s = get_scratch();
	if (!s)
		return;
	struct mdatp_sensitive_event *e = begin_sensitive(s, MDATP_EV_SIGNAL_SUITE, 0);
	e->arg[0] = sig;
	e->target_pid = target;
	emit(s, sizeof(*e));
}

SEC("tracepoint/syscalls/sys_enter_kill")
int enter_kill(struct trace_event_raw_sys_enter *ctx)
{
	long pid = ctx->args[0];
	if (pid > 0)
		signal_to_suite(pid, ctx->args[1]);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_tgkill")
int enter_tgkill(struct trace_event_raw_sys_enter *ctx)
{
	signal_to_suite(ctx->args[0], ctx->args[2]);
	return 0;
}
