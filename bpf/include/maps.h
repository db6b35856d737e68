/* Every map and global of the mdatp programs, in one place. */
#ifndef MDATP_MAPS_H
#define MDATP_MAPS_H

/* Kernel rings; sizes are set by the loader before load. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} rb_process SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} rb_activity SEC(".maps");

/* Per-CPU scratch: the record being built, and the path being walked (two
 * maps: a per-CPU value is limited to 32 KiB). Masked offsets need slack. */
#define SCRATCH_EVENT_SIZE (MDATP_EVENT_MAX + 2 * MDATP_PATH_MAX)
#define SCRATCH_PATH_SIZE (MDATP_PATH_MAX * 2)
struct scratch {
	__u8 event[SCRATCH_EVENT_SIZE];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_map SEC(".maps");

struct path_scratch {
	__u8 path[SCRATCH_PATH_SIZE];
	struct mdatp_prefix_key prefix;
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_scratch);
} path_scratch_map SEC(".maps");

/* Syscall arguments kept from sys_enter to sys_exit, by thread. LRU so a
 * missed exit cannot leak. */
struct syscall_args {
	__u64 args[6];
	__u32 nr;
	__u32 old_euid;
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct syscall_args);
} pending_syscalls SEC(".maps");

/* Processes of the suite itself (tgid -> 1): their file and network activity
 * is not reported. Seeded by the collector, inherited on fork. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} suite_tgids SEC(".maps");

/* Global process exclusions: executables by identity, and the processes
 * running them (inherited on fork, re-evaluated on exec). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct mdatp_exe_key);
	__type(value, __u8);
} excluded_exes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} excluded_tgids SEC(".maps");

/* Global path-prefix exclusions (longest prefix match on path bytes). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mdatp_prefix_key);
	__type(value, __u8);
} excluded_prefixes SEC(".maps");

/* Kernel exec blocking (see mdatp_abi.h); off until the collector turns it on. */
__u32 exec_blocking = 0;
struct mdatp_deny_entry deny_table[MDATP_DENY_SLOTS] = {};

/* Watched files (see mdatp_abi.h), kept current by the collector. */
struct mdatp_watch_entry watched_files[MDATP_WATCH_SLOTS] = {};

/* Counters, read by the collector through the mmapped .bss. */
struct mdatp_kernel_counters counters = {};

/* FMODE_CREATED moved between kernels and is a macro (not in BTF): the loader
 * measures it by opening a file it creates and one it does not, while
 * calib_tgid names the loader. 0 until calibrated: creates are then reported
 * as open-for-write. */
__u32 calib_tgid = 0;
__u32 calib_fmode[2] = {};
__u32 calib_count = 0;
__u32 fmode_created_mask = 0;

#endif
