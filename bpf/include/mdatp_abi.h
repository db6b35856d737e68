/* mdatp kernel <-> user ABI: every record the BPF programs emit.
 *
 * One header for both sides. BPF includes it after vmlinux.h; user space (the
 * Swift C target CMdatpABI) includes it after <linux/types.h>. Every struct is
 * fixed-width and naturally aligned, its size pinned by _Static_assert here and
 * by a Swift test (Tests/MdatpEventsTests/ABILayoutTests.swift).
 *
 * A record is: struct mdatp_event_header, a type-specific fixed part, then
 * variable data (strings, not NUL-terminated, lengths in the fixed part).
 * Bump MDATP_ABI_VERSION on any change. */
#ifndef MDATP_ABI_H
#define MDATP_ABI_H

#define MDATP_ABI_VERSION 2

/* Bounds. Paths are walked from dentries in the kernel, argv copied from the
 * new mm; anything longer is cut and flagged. */
#define MDATP_PATH_MAX 4096          /* bytes of one path, incl. room for NUL */
#define MDATP_ARGV_MAX 4096          /* bytes of argv (NUL-separated) */
#define MDATP_NAME_MAX 256           /* memfd names, mount fs types, module names */
#define MDATP_TTY_MAX 64
#define MDATP_PATH_DEPTH 128         /* dentry components walked */
#define MDATP_EXCLUDE_PREFIX_MAX 256 /* bytes of a path-prefix exclusion */
#define MDATP_EVENT_MAX 16384        /* no record is larger */

/* Kernel rings. Process lifecycle has its own so a file flood cannot starve it. */
enum mdatp_kernel_ring {
	MDATP_RING_PROCESS = 0,
	MDATP_RING_ACTIVITY = 1,
	MDATP_RING_COUNT = 2,
};

/* Event classes, for per-class counters and drops. */
enum mdatp_event_class {
	MDATP_CLASS_PROCESS = 0,
	MDATP_CLASS_FILE = 1,
	MDATP_CLASS_NETWORK = 2,
	MDATP_CLASS_SENSITIVE = 3,
	MDATP_CLASS_COUNT = 4,
};

enum mdatp_event_type {
	MDATP_EV_EXEC = 1,
	MDATP_EV_FORK = 2,
	MDATP_EV_EXIT = 3,

	MDATP_EV_FILE_CREATE = 10,
	MDATP_EV_FILE_OPEN_WRITE = 11,
	MDATP_EV_FILE_CLOSE_WRITE = 12,
	MDATP_EV_FILE_RENAME = 13,
	MDATP_EV_FILE_UNLINK = 14,
	MDATP_EV_FILE_CHMOD = 15,
	MDATP_EV_FILE_CHOWN = 16,
	MDATP_EV_FILE_OPEN_READ = 17, /* a watched file (password hashes) opened for reading */

	MDATP_EV_NET_CONNECT = 20,
	MDATP_EV_NET_ACCEPT = 21,
	MDATP_EV_NET_BIND = 22,
	MDATP_EV_NET_LISTEN = 23,

	MDATP_EV_PTRACE = 30,
	MDATP_EV_MODULE_LOAD = 31,
	MDATP_EV_BPF_LOAD = 32,
	MDATP_EV_CRED_CHANGE = 33,
	MDATP_EV_MEMFD_CREATE = 34,
	MDATP_EV_MOUNT = 35,
	MDATP_EV_SIGNAL_SUITE = 36,
};

/* header.flags */
#define MDATP_F_PATH_TRUNCATED 0x0001  /* first path cut (depth or length) */
#define MDATP_F_PATH2_TRUNCATED 0x0002 /* second path (rename target, cwd) cut */
#define MDATP_F_ARGV_TRUNCATED 0x0004
#define MDATP_F_SETUID_EXEC 0x0008     /* exe has S_ISUID */
#define MDATP_F_SETGID_EXEC 0x0010     /* exe has S_ISGID */
#define MDATP_F_PATH_RELATIVE 0x0020   /* dir part could not be resolved */
#define MDATP_F_STR_TRUNCATED 0x0040   /* a name string was cut */
#define MDATP_F_EXEC_BLOCKED 0x0080    /* exec: the image is denied; SIGKILL sent before it ran */
#define MDATP_F_EXE_DELETED 0x0100     /* exec: the executable has no name left (unlinked, memfd) */
#define MDATP_F_EXEC_REFUSED 0x0200    /* exec: refused by the BPF LSM before the image loaded (EPERM); the
                                          * caller keeps its old image, argv holds the file name only */
#define MDATP_F_EXE_TMPFS 0x0400       /* exec: the executable lives on tmpfs or ramfs (memory only; memfds too) */

/* exec: what descriptors 0, 1, 2 were (4 bits each, fd 0 lowest), so a shell
 * on a socket (reverse shell) or a pipe (download | sh) is visible. */
enum mdatp_stdio_kind {
	MDATP_STDIO_NONE = 0,
	MDATP_STDIO_FILE = 1,
	MDATP_STDIO_PIPE = 2,
	MDATP_STDIO_SOCKET = 3,
	MDATP_STDIO_CHAR = 4, /* terminal or character device */
	MDATP_STDIO_OTHER = 5,
};

/* Cred-change syscalls (mdatp_sensitive_event.arg[0] for MDATP_EV_CRED_CHANGE). */
enum mdatp_cred_op {
	MDATP_CRED_SETUID = 1,
	MDATP_CRED_SETGID = 2,
	MDATP_CRED_SETREUID = 3,
	MDATP_CRED_SETREGID = 4,
	MDATP_CRED_SETRESUID = 5,
	MDATP_CRED_SETRESGID = 6,
	MDATP_CRED_CAPSET = 7,
};

struct mdatp_event_header {
	__u16 type;     /* enum mdatp_event_type */
	__u16 flags;    /* MDATP_F_* */
	__u32 size;     /* whole record, header included */
	__u64 seq;      /* per kernel ring, from 0, no gaps unless dropped */
	__u64 ktime_ns; /* CLOCK_BOOTTIME */
	__u32 pid;      /* thread id of the acting task */
	__u32 tgid;     /* process id of the acting task */
	__u32 uid;      /* real uid */
	__u32 euid;
	__u64 cgroup_id; /* cgroup v2 id */
	char comm[16];
};

/* exec: data = exe[exe_len] cwd[cwd_len] tty[tty_len] argv[argv_len] */
struct mdatp_exec_event {
	struct mdatp_event_header h;
	__u32 ppid;
	__u32 gid;
	__u32 egid;
	__u32 loginuid;   /* audit login uid, 4294967295 when unset */
	__u32 sessionid;  /* audit session */
	__u32 exe_dev;    /* kernel dev_t: major << 20 | minor */
	__u64 exe_ino;
	__s64 exe_mtime_sec;
	__u32 exe_mtime_nsec;
	__u32 exe_mode;
	__u64 start_time_ns; /* task start, CLOCK_BOOTTIME */
	__u32 argc;
	__u16 exe_len;
	__u16 cwd_len;
	__u16 tty_len;
	__u16 argv_len;
	__u32 stdio; /* enum mdatp_stdio_kind per nibble: fd 0 bits 0-3, fd 1 bits 4-7, fd 2 bits 8-11 */
};

/* fork of a new process (threads are not reported) */
struct mdatp_fork_event {
	struct mdatp_event_header h; /* the parent */
	__u32 child_pid;
	__u32 child_tgid;
	__u64 child_start_time_ns;
};

/* the last thread of a process exited */
struct mdatp_exit_event {
	struct mdatp_event_header h;
	__u32 ppid;
	__u32 exit_code; /* wait status: (code << 8) or signal number */
	__u64 start_time_ns;
};

/* file: data = path[path_len] path2[path2_len] (path2 only for rename) */
struct mdatp_file_event {
	struct mdatp_event_header h;
	__u32 mode;      /* chmod: requested mode; else inode mode when known */
	__u32 owner_uid; /* chown: requested uid (-1 = unchanged) */
	__u32 owner_gid;
	__u32 dev;       /* kernel dev_t when known, else 0 */
	__u64 ino;
	__u32 open_flags;
	__u16 path_len;
	__u16 path2_len;
};

struct mdatp_net_event {
	struct mdatp_event_header h;
	__u16 family;   /* AF_INET 2, AF_INET6 10 */
	__u16 protocol; /* IPPROTO_TCP 6, IPPROTO_UDP 17 */
	__u16 sock_type;
	__u16 local_port;
	__u16 remote_port;
	__u16 reserved0;
	__s32 ret;      /* syscall result (connect may be -EINPROGRESS) */
	__u8 local_addr[16];  /* IPv4 in the first 4 bytes */
	__u8 remote_addr[16];
};

/* sensitive: data = str1[str1_len] str2[str2_len] str3[str3_len]
 *   ptrace:      arg0 request, target_pid
 *   module load: arg0 1 = finit_module (str1 file path), 0 = init_module (arg1 image size)
 *   bpf load:    arg0 prog type, arg1 insn count, str1 prog name
 *   cred change: arg0 enum mdatp_cred_op, arg1..3 requested ids (caps for capset),
 *                new_uid..new_egid are the credentials after the call
 *   memfd:       arg0 flags, arg1 returned fd, str1 name
 *   mount:       arg0 flags, str1 source, str2 target, str3 fs type
 *   signal:      arg0 signal, target_pid (a process of the suite) */
struct mdatp_sensitive_event {
	struct mdatp_event_header h;
	__s64 ret;
	__u64 arg[4];
	__u32 target_pid;
	__u32 new_uid;
	__u32 new_euid;
	__u32 new_gid;
	__u32 new_egid;
	__u16 str1_len;
	__u16 str2_len;
	__u16 str3_len;
	__u16 reserved0;
	__u32 reserved1;
};

/* Kernel exec blocking: an open-addressing table of denied executables by
 * identity, in the program's .bss (mmapped by the collector, which keeps
 * writing it without any privilege). Probes at most MDATP_DENY_PROBES slots
 * from hash(ino, dev); an entry is used only when its state is exactly
 * MDATP_DENY_VALID, and any other non-empty state is corruption: counted and
 * ignored (fail open). */
#define MDATP_DENY_SLOTS 4096
#define MDATP_DENY_PROBES 8
#define MDATP_DENY_EMPTY 0u
#define MDATP_DENY_VALID 0xB10C5AFEu
#define MDATP_DENY_REMOVED 0x0DEAD0FFu

#define MDATP_DENY_HAS_GENERATION 1u /* compare the inode's i_generation too */

struct mdatp_deny_entry {
	__u64 ino;
	__u32 dev;   /* kernel dev_t */
	__u32 state; /* written last (release) by the collector */
	/* The inode's i_generation where its filesystem tells it (ext4, xfs, btrfs…):
	 * an inode number freed and reused for another file is then not denied. */
	__u32 generation;
	__u32 flags; /* MDATP_DENY_HAS_GENERATION */
};

static inline __u32 mdatp_deny_hash(__u64 ino, __u32 dev)
{
	__u64 h = (ino ^ ((__u64)dev << 32)) * 0x9E3779B97F4A7C15ull;
	return (__u32)(h >> 40);
}

/* Counters the collector reads from the program's .bss (mmapped). */
struct mdatp_kernel_counters {
	__u64 ring_seq[MDATP_RING_COUNT];
	__u64 class_emitted[MDATP_CLASS_COUNT];
	__u64 class_dropped[MDATP_CLASS_COUNT];
	__u64 filtered_suite;    /* suite's own file/network activity */
	__u64 filtered_excluded; /* global exclusions */
	__u64 exec_blocked;      /* execs killed by the deny table */
	__u64 deny_corrupt;      /* deny-table slots found corrupt (ignored) */
};

/* Files whose read opens are reported (MDATP_EV_FILE_OPEN_READ): a small
 * array in .bss the collector keeps current by identity (the files are
 * replaced by rename when passwords change). An entry counts when its state
 * is MDATP_WATCH_VALID. */
#define MDATP_WATCH_SLOTS 8
#define MDATP_WATCH_VALID 0x5EE5EE5Eu
struct mdatp_watch_entry {
	__u64 ino;
	__u32 dev;   /* kernel dev_t */
	__u32 state; /* written last by the collector */
};

/* Key of the path-prefix exclusion LPM trie. */
struct mdatp_prefix_key {
	__u32 prefixlen; /* in bits */
	__u8 data[MDATP_EXCLUDE_PREFIX_MAX];
};

/* Key of the excluded-executable map. */
struct mdatp_exe_key {
	__u64 ino;
	__u32 dev; /* kernel dev_t */
	__u32 reserved;
};

_Static_assert(sizeof(struct mdatp_event_header) == 64, "header layout");
_Static_assert(sizeof(struct mdatp_exec_event) == 136, "exec layout");
_Static_assert(sizeof(struct mdatp_fork_event) == 80, "fork layout");
_Static_assert(sizeof(struct mdatp_exit_event) == 80, "exit layout");
_Static_assert(sizeof(struct mdatp_file_event) == 96, "file layout");
_Static_assert(sizeof(struct mdatp_net_event) == 112, "net layout");
_Static_assert(sizeof(struct mdatp_sensitive_event) == 136, "sensitive layout");
_Static_assert(sizeof(struct mdatp_kernel_counters) == 112, "counters layout");
_Static_assert(sizeof(struct mdatp_deny_entry) == 24 && __builtin_offsetof(struct mdatp_deny_entry, state) == 12 &&
	       __builtin_offsetof(struct mdatp_deny_entry, generation) == 16, "deny entry layout");
_Static_assert(sizeof(struct mdatp_prefix_key) == 260, "prefix key layout");
_Static_assert(sizeof(struct mdatp_exe_key) == 16, "exe key layout");
_Static_assert(sizeof(struct mdatp_watch_entry) == 16 && __builtin_offsetof(struct mdatp_watch_entry, state) == 12, "watch entry layout");
_Static_assert(__builtin_offsetof(struct mdatp_exec_event, stdio) == 132, "exec stdio");
_Static_assert(__builtin_offsetof(struct mdatp_exec_event, argc) == 120, "exec argc");
_Static_assert(__builtin_offsetof(struct mdatp_net_event, local_addr) == 80, "net addr");

#endif
