// The ABI header's layout, seen from Swift (the C side checks it with
// _Static_assert): sizes, and every offset the decoder reads.
import CMdatpABI
import MdatpEvents
import XCTest

final class ABILayoutTests: XCTestCase {
    func off<T>(_ kp: PartialKeyPath<T>) -> Int { MemoryLayout<T>.offset(of: kp)! }

    func testSizes() {
        XCTAssertEqual(MemoryLayout<mdatp_event_header>.size, 64)
        XCTAssertEqual(MemoryLayout<mdatp_exec_event>.size, 136)
        XCTAssertEqual(MemoryLayout<mdatp_fork_event>.size, 80)
        XCTAssertEqual(MemoryLayout<mdatp_exit_event>.size, 80)
        XCTAssertEqual(MemoryLayout<mdatp_file_event>.size, 96)
        XCTAssertEqual(MemoryLayout<mdatp_net_event>.size, 112)
        XCTAssertEqual(MemoryLayout<mdatp_sensitive_event>.size, 136)
        XCTAssertEqual(MemoryLayout<mdatp_kernel_counters>.size, 112)
        XCTAssertEqual(MemoryLayout<mdatp_deny_entry>.size, 24)
        XCTAssertEqual(MemoryLayout<mdatp_deny_entry>.offset(of: \mdatp_deny_entry.generation), 16)
        XCTAssertEqual(MemoryLayout<mdatp_deny_entry>.offset(of: \mdatp_deny_entry.flags), 20)
        XCTAssertEqual(MemoryLayout<mdatp_deny_entry>.offset(of: \mdatp_deny_entry.state), 12)
        XCTAssertEqual(MemoryLayout<mdatp_prefix_key>.size, 260)
        XCTAssertEqual(MemoryLayout<mdatp_exe_key>.size, 16)
        XCTAssertEqual(MDATP_ABI_VERSION, 2)
    }

    func testHeaderOffsets() {
        XCTAssertEqual(off(\mdatp_event_header.type), 0)
        XCTAssertEqual(off(\mdatp_event_header.flags), 2)
        XCTAssertEqual(off(\mdatp_event_header.size), 4)
        XCTAssertEqual(off(\mdatp_event_header.seq), 8)
        XCTAssertEqual(off(\mdatp_event_header.ktime_ns), 16)
        XCTAssertEqual(off(\mdatp_event_header.pid), 24)
        XCTAssertEqual(off(\mdatp_event_header.tgid), 28)
        XCTAssertEqual(off(\mdatp_event_header.uid), 32)
        XCTAssertEqual(off(\mdatp_event_header.euid), 36)
        XCTAssertEqual(off(\mdatp_event_header.cgroup_id), 40)
        XCTAssertEqual(off(\mdatp_event_header.comm), 48)
    }

    /// The decoder reads these offsets as literals; they must match the C structs.
    func testBodyOffsetsTheDecoderUses() {
        XCTAssertEqual(off(\mdatp_exec_event.ppid), 64)
        XCTAssertEqual(off(\mdatp_exec_event.gid), 68)
        XCTAssertEqual(off(\mdatp_exec_event.egid), 72)
        XCTAssertEqual(off(\mdatp_exec_event.loginuid), 76)
        XCTAssertEqual(off(\mdatp_exec_event.sessionid), 80)
        XCTAssertEqual(off(\mdatp_exec_event.exe_dev), 84)
        XCTAssertEqual(off(\mdatp_exec_event.exe_ino), 88)
        XCTAssertEqual(off(\mdatp_exec_event.exe_mtime_sec), 96)
        XCTAssertEqual(off(\mdatp_exec_event.exe_mtime_nsec), 104)
        XCTAssertEqual(off(\mdatp_exec_event.exe_mode), 108)
        XCTAssertEqual(off(\mdatp_exec_event.start_time_ns), 112)
        XCTAssertEqual(off(\mdatp_exec_event.argc), 120)
        XCTAssertEqual(off(\mdatp_exec_event.exe_len), 124)
        XCTAssertEqual(off(\mdatp_exec_event.cwd_len), 126)
        XCTAssertEqual(off(\mdatp_exec_event.tty_len), 128)
        XCTAssertEqual(off(\mdatp_exec_event.argv_len), 130)
        XCTAssertEqual(off(\mdatp_fork_event.child_pid), 64)
        XCTAssertEqual(off(\mdatp_fork_event.child_tgid), 68)
        XCTAssertEqual(off(\mdatp_fork_event.child_start_time_ns), 72)
        XCTAssertEqual(off(\mdatp_exit_event.ppid), 64)
        XCTAssertEqual(off(\mdatp_exit_event.exit_code), 68)
        XCTAssertEqual(off(\mdatp_exit_event.start_time_ns), 72)
        XCTAssertEqual(off(\mdatp_file_event.mode), 64)
        XCTAssertEqual(off(\mdatp_file_event.owner_uid), 68)
        XCTAssertEqual(off(\mdatp_file_event.owner_gid), 72)
        XCTAssertEqual(off(\mdatp_file_event.dev), 76)
        XCTAssertEqual(off(\mdatp_file_event.ino), 80)
        XCTAssertEqual(off(\mdatp_file_event.open_flags), 88)
        XCTAssertEqual(off(\mdatp_file_event.path_len), 92)
        XCTAssertEqual(off(\mdatp_file_event.path2_len), 94)
        XCTAssertEqual(off(\mdatp_net_event.family), 64)
        XCTAssertEqual(off(\mdatp_net_event.protocol), 66)
        XCTAssertEqual(off(\mdatp_net_event.sock_type), 68)
        XCTAssertEqual(off(\mdatp_net_event.local_port), 70)
        XCTAssertEqual(off(\mdatp_net_event.remote_port), 72)
        XCTAssertEqual(off(\mdatp_net_event.ret), 76)
        XCTAssertEqual(off(\mdatp_net_event.local_addr), 80)
        XCTAssertEqual(off(\mdatp_net_event.remote_addr), 96)
        XCTAssertEqual(off(\mdatp_sensitive_event.ret), 64)
        XCTAssertEqual(off(\mdatp_sensitive_event.arg), 72)
        XCTAssertEqual(off(\mdatp_sensitive_event.target_pid), 104)
        XCTAssertEqual(off(\mdatp_sensitive_event.new_uid), 108)
        XCTAssertEqual(off(\mdatp_sensitive_event.new_euid), 112)
        XCTAssertEqual(off(\mdatp_sensitive_event.new_gid), 116)
        XCTAssertEqual(off(\mdatp_sensitive_event.new_egid), 120)
        XCTAssertEqual(off(\mdatp_sensitive_event.str1_len), 124)
        XCTAssertEqual(off(\mdatp_sensitive_event.str2_len), 126)
        XCTAssertEqual(off(\mdatp_sensitive_event.str3_len), 128)
        XCTAssertEqual(off(\mdatp_exec_event.stdio), 132)
        XCTAssertEqual(MemoryLayout<mdatp_watch_entry>.size, 16)
        XCTAssertEqual(off(\mdatp_watch_entry.state), 12)
    }

    func testEventTypeNumbersMatchTheHeader() {
        let pairs: [(EventKind, UInt32)] = [
            (.exec, MDATP_EV_EXEC.rawValue), (.fork, MDATP_EV_FORK.rawValue), (.exit, MDATP_EV_EXIT.rawValue),
            (.fileCreate, MDATP_EV_FILE_CREATE.rawValue), (.fileOpenWrite, MDATP_EV_FILE_OPEN_WRITE.rawValue),
            (.fileCloseWrite, MDATP_EV_FILE_CLOSE_WRITE.rawValue), (.fileRename, MDATP_EV_FILE_RENAME.rawValue),
            (.fileUnlink, MDATP_EV_FILE_UNLINK.rawValue), (.fileChmod, MDATP_EV_FILE_CHMOD.rawValue),
            (.fileChown, MDATP_EV_FILE_CHOWN.rawValue), (.netConnect, MDATP_EV_NET_CONNECT.rawValue),
            (.netAccept, MDATP_EV_NET_ACCEPT.rawValue), (.netBind, MDATP_EV_NET_BIND.rawValue),
            (.netListen, MDATP_EV_NET_LISTEN.rawValue), (.ptrace, MDATP_EV_PTRACE.rawValue),
            (.moduleLoad, MDATP_EV_MODULE_LOAD.rawValue), (.bpfLoad, MDATP_EV_BPF_LOAD.rawValue),
            (.credChange, MDATP_EV_CRED_CHANGE.rawValue), (.memfdCreate, MDATP_EV_MEMFD_CREATE.rawValue),
            (.mount, MDATP_EV_MOUNT.rawValue), (.signalSuite, MDATP_EV_SIGNAL_SUITE.rawValue),
            (.fileOpenRead, MDATP_EV_FILE_OPEN_READ.rawValue),
        ]
        for (kind, raw) in pairs { XCTAssertEqual(UInt32(kind.rawValue), raw, kind.name) }
    }

    func testFlagValuesMatchTheHeader() {
        let pairs: [(String, UInt16, Int32)] = [
            ("path_truncated", EventFlag.pathTruncated, MDATP_F_PATH_TRUNCATED), ("path2_truncated", EventFlag.path2Truncated, MDATP_F_PATH2_TRUNCATED),
            ("argv_truncated", EventFlag.argvTruncated, MDATP_F_ARGV_TRUNCATED), ("setuid_exec", EventFlag.setuidExec, MDATP_F_SETUID_EXEC),
            ("setgid_exec", EventFlag.setgidExec, MDATP_F_SETGID_EXEC), ("path_relative", EventFlag.pathRelative, MDATP_F_PATH_RELATIVE),
            ("string_truncated", EventFlag.stringTruncated, MDATP_F_STR_TRUNCATED), ("exec_blocked", EventFlag.execBlocked, MDATP_F_EXEC_BLOCKED),
            ("exe_deleted", EventFlag.exeDeleted, MDATP_F_EXE_DELETED), ("exec_refused", EventFlag.execRefused, MDATP_F_EXEC_REFUSED),
            ("exe_on_tmpfs", EventFlag.exeOnTmpfs, MDATP_F_EXE_TMPFS),
        ]
        for (name, swift, c) in pairs { XCTAssertEqual(Int32(swift), c, name) }
    }
}
