/* Network: connect, accept, bind, listen for IPv4/IPv6 sockets, with the
 * 5-tuple read from the socket (and from the caller's sockaddr for connect,
 * whose remote end the socket may not hold yet for UDP). */

static __always_inline void emit_sock_event(__u16 type, long fd, long ret, const void *uaddr)
{
	struct sock *sk = read_fd_sock(current_task(), fd);
	if (!sk)
		return;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return;
	struct scratch *s = get_scratch();
	if (!s)
		return;
	struct mdatp_net_event *e = (void *)s->event;
	__builtin_memset(e, 0, sizeof(*e));
	fill_header(&e->h, type, 0);
	fill_sock(e, sk);
	e->ret = ret;
	if (uaddr) {
		__u16 ufam = 0;
		bpf_probe_read_user(&ufam, 2, uaddr);
		if (ufam == AF_INET) {
			__u16 port = 0;
			bpf_probe_read_user(&port, 2, uaddr + 2);
			e->remote_port = bpf_ntohs(port);
			__builtin_memset(e->remote_addr, 0, 16);
			bpf_probe_read_user(e->remote_addr, 4, uaddr + 4);
		} else if (ufam == AF_INET6) {
			__u16 port = 0;
			bpf_probe_read_user(&port, 2, uaddr + 2);
			e->remote_port = bpf_ntohs(port);
			bpf_probe_read_user(e->remote_addr, 16, uaddr + 8);
		}
	}
	emit(s, sizeof(*e));
}

ENTER_STASH_FILTERED(connect, 3)
SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	struct syscall_args a;
	if (!take_args(&a))
		return 0;
	/* Failed attempts too (refused, unreachable): a port scan is mostly those. */
	emit_sock_event(MDATP_EV_NET_CONNECT, (int)a.args[0], ctx->ret, (const void *)a.args[1]);
	return 0;
}

/* accept: the new fd is the result, no arguments needed. */
static __always_inline int on_accept_exit(struct trace_event_raw_sys_exit *ctx)
{
	if (ctx->ret < 0 || filtered_actor())
		return 0;
	emit_sock_event(MDATP_EV_NET_ACCEPT, ctx->ret, 0, NULL);
	return 0;
}
SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct trace_event_raw_sys_exit *ctx) { return on_accept_exit(ctx); }
SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct trace_event_raw_sys_exit *ctx) { return on_accept_exit(ctx); }

ENTER_STASH_FILTERED(bind, 3)
SEC("tracepoint/syscalls/sys_exit_bind")
int exit_bind(struct trace_event_raw_sys_exit *ctx)
{
	struct syscall_args a;
	if (!take_args(&a) || ctx->ret != 0)
		return 0;
	emit_sock_event(MDATP_EV_NET_BIND, (int)a.args[0], 0, NULL);
	return 0;
}

ENTER_STASH_FILTERED(listen, 2)
SEC("tracepoint/syscalls/sys_exit_listen")
int exit_listen(struct trace_event_raw_sys_exit *ctx)
{
	struct syscall_args a;
	if (!take_args(&a) || ctx->ret != 0)
		return 0;
	emit_sock_event(MDATP_EV_NET_LISTEN, (int)a.args[0], 0, NULL);
	return 0;
}
