#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <linux/bpf.h>

#include "kernel_test.h"

int mdatp_kt_traceme(void)
{
	return ptrace(PTRACE_TRACEME, 0, NULL, NULL) == 0 ? 0 : -errno;
}

int mdatp_kt_finit_module(int fd)
{
	return syscall(SYS_finit_module, fd, "", 0) == 0 ? 0 : -errno;
}

int mdatp_kt_load_socket_filter(const char *name)
{
	struct bpf_insn insns[2] = { { .code = BPF_ALU64 | BPF_MOV | BPF_K }, { .code = BPF_JMP | BPF_EXIT } };
	union bpf_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
	attr.insn_cnt = 2;
	attr.insns = (unsigned long)insns;
	attr.license = (unsigned long)"GPL";
	strncpy(attr.prog_name, name, sizeof(attr.prog_name) - 1);
	long fd = syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
	return fd < 0 ? -errno : (int)fd;
}

int mdatp_kt_mount_tmpfs(const char *source, const char *target)
{
	if (unshare(CLONE_NEWNS) != 0)
		return -errno;
	if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		return -errno;
	return mount(source, target, "tmpfs", 0, "size=64k") == 0 ? 0 : -errno;
}
