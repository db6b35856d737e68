// SPDX-License-Identifier: GPL-2.0
/* The mdatp collector's BPF programs: one object, one skeleton.
 * Only tracepoint-family hooks (tp_btf, syscall tracepoints): they load on
 * every kernel we support, including ones that refuse trampolines. */
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

char LICENSE[] SEC("license") = "GPL";
