/* The collector's only window on libbpf: open/load/attach the skeleton, fill
 * the filter maps, read counters, poll the kernel rings. A C shim because the
 * skeleton is generated C and libbpf's callbacks are C function pointers. */
#ifndef MDATP_COLLECTOR_BPF_H
#define MDATP_COLLECTOR_BPF_H

#include <stddef.h>
#include <stdint.h>
#include <linux/types.h>
#include "../../CMdatpABI/include/mdatp_abi_user.h"

typedef struct mdatp_collector_bpf mdatp_collector_bpf;

/* Called for every kernel record; ring is enum mdatp_kernel_ring. Return 0. */
typedef int (*mdatp_record_fn)(void *ctx, const void *data, size_t size, int ring);

/* Pointers into the program's mmapped .bss (valid while loaded). */
struct mdatp_bss_view {
	volatile struct mdatp_kernel_counters *counters;
	volatile uint32_t *calib_tgid;
	volatile uint32_t *calib_fmode; /* [2] */
	volatile uint32_t *calib_count;
	volatile uint32_t *fmode_created_mask;
	volatile uint32_t *exec_blocking;
	struct mdatp_deny_entry *deny_table; /* MDATP_DENY_SLOTS */
	struct mdatp_watch_entry *watched_files; /* MDATP_WATCH_SLOTS */
};

/* Which hook families the loader may use. */
enum mdatp_hook_choice {
	MDATP_HOOKS_AUTO = 0,       /* fentry and BPF LSM where this kernel allows them */
	MDATP_HOOKS_TRACEPOINT = 1, /* tracepoint family only */
};

/* Opens the object; programs whose syscall tracepoint this kernel lacks are
 * not loaded (listed by mdatp_bpf_skipped). `hooks` says whether trampolines
 * may be used; `object` is, for tests only (the kernel matrix loads a
 * deliberately broken build), another build of the same object instead of the
 * embedded one (NULL: the embedded one; the collector never passes one).
 * Returns NULL with err filled. */
mdatp_collector_bpf *mdatp_bpf_open_with(enum mdatp_hook_choice hooks, const void *object, size_t object_size,
					 uint32_t process_ring_bytes, uint32_t activity_ring_bytes,
					 const char *tracefs_events, char *err, size_t errlen);
/* What the loader chose: "tracepoint", "tracepoint+lsm", "fentry" or "fentry+lsm". */
const char *mdatp_bpf_hook_family(mdatp_collector_bpf *b);
/* Why trampolines were not used ("" when they are). */
const char *mdatp_bpf_hook_reason(mdatp_collector_bpf *b);
int mdatp_bpf_load(mdatp_collector_bpf *b, char *err, size_t errlen);
int mdatp_bpf_attach(mdatp_collector_bpf *b, char *err, size_t errlen);
void mdatp_bpf_close(mdatp_collector_bpf *b);

struct mdatp_bss_view mdatp_bpf_bss(mdatp_collector_bpf *b);
/* Comma-separated program names not loaded on this kernel. */
const char *mdatp_bpf_skipped(mdatp_collector_bpf *b);
int mdatp_bpf_attached_count(mdatp_collector_bpf *b);

int mdatp_bpf_suite_add(mdatp_collector_bpf *b, uint32_t tgid);
int mdatp_bpf_exclude_exe(mdatp_collector_bpf *b, uint32_t kernel_dev, uint64_t ino);
int mdatp_bpf_exclude_prefix(mdatp_collector_bpf *b, const uint8_t *prefix, size_t len);

int mdatp_bpf_rings_open(mdatp_collector_bpf *b, mdatp_record_fn fn, void *ctx);
/* Polls both kernel rings; returns records consumed or -errno. */
int mdatp_bpf_rings_poll(mdatp_collector_bpf *b, int timeout_ms);
int mdatp_bpf_rings_epoll_fd(mdatp_collector_bpf *b);
/* Consumes whatever both kernel rings hold, woken or not; records consumed or -errno. */
int mdatp_bpf_rings_consume(mdatp_collector_bpf *b);

#endif
