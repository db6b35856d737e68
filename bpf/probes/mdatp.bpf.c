// SPDX-License-Identifier: GPL-2.0
/* The mdatp collector's BPF programs: one object, one skeleton.
 * Tracepoint-family hooks (tp_btf, syscall tracepoints) load on every kernel
 * we support, including ones that refuse trampolines; trampoline.bpf.h holds
 * the fentry/LSM programs the loader prefers where the kernel allows them. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "mdatp_abi.h"
#include "maps.h"
#include "../lib/helpers.h"

#include "process.bpf.h"
#include "file.bpf.h"
#include "network.bpf.h"
#include "sensitive.bpf.h"
#include "trampoline.bpf.h"

#ifdef MDATP_CORE_BREAK
/* Test only (make test-kernels): a field no kernel has, read on the exec path, so
 * the matrix shows a failed CO-RE relocation fails the load instead of passing. */
struct task_struct___mdatp_broken { int mdatp_no_such_field; } __attribute__((preserve_access_index));
SEC("tp_btf/sched_process_fork")
int BPF_PROG(core_break, struct task_struct *parent)
{
	struct task_struct___mdatp_broken *t = (void *)parent;
	return BPF_CORE_READ(t, mdatp_no_such_field);
}
#endif

char LICENSE[] SEC("license") = "GPL";
