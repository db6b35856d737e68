#!/usr/bin/env python3
"""make bench-scan: our scanner against ClamAV and YARA on one corpus with the
same synthetic signatures, in the same run, medians of interleaved runs.

  corpus      regular files of /usr/bin and the *.so* of /usr/lib/x86_64-linux-gnu
              (path order, up to --corpus-mb) plus planted test samples
  signatures  deterministic (seeded): .hdb/.hsb hashes, .ndb bodies, .ldb logical
              signatures for ClamAV and for us; the same bodies as YARA rules
  runs        clamscan -r (1 thread, database load included), clamd + clamdscan
              --multiscan (cold, then its clean cache), yara -r -p 2, our engine in
              process (mdatp-bench scan, 1 and 2 threads), and the product: the suite
              with these signatures as a signed definitions update, `mdatp scan
              custom` cold and warm (scan cache)
  big         --big: 1.3 M+ signatures on a smaller corpus, our engine and clamscan
  memory      the whole suite's resident memory, idle with the default definitions
"""
import argparse, hashlib, json, os, random, shutil, signal, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from sensor import Suite, med  # noqa: E402

# Split so this file itself is not the test string (a real-time scan would move it).
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-" + b"ANTIVIRUS-TEST-FILE!$H+H*"
TESTFILES = "/usr/share/clamav-testfiles"


def make_corpus(work, mb):
    budget, files = mb << 20, []
    for root in ["/usr/bin", "/usr/lib/x86_64-linux-gnu"]:
        for dp, dn, fn in os.walk(root):
            dn.sort()
            for n in sorted(fn):
                p = os.path.join(dp, n)
                if root.endswith("gnu") and ".so" not in n:
                    continue
                if os.path.islink(p) or not os.path.isfile(p):
                    continue
                files.append(p)
    files.sort()
    corpus, total, out = f"{work}/corpus", 0, []
    for p in files:
        sz = os.path.getsize(p)
        if sz >= 20 << 20:
            continue
        if total + sz > budget:
            break
        dst = corpus + p
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(p, dst)
        out.append(dst)
        total += sz
    os.makedirs(f"{corpus}/planted")
    with open(f"{corpus}/planted/eicar.com", "wb") as f:
        f.write(EICAR)
    out.append(f"{corpus}/planted/eicar.com")
    for n in ["clam.exe", "clam.zip", "clam-fsg.exe", "clam.7z"]:
        if os.path.exists(f"{TESTFILES}/{n}"):
            shutil.copyfile(f"{TESTFILES}/{n}", f"{corpus}/planted/{n}")
            out.append(f"{corpus}/planted/{n}")
    with open(f"{work}/corpus.list", "w") as f:
        f.write("\n".join(out) + "\n")
    return len(out), sum(os.path.getsize(p) for p in out)


class Synth:
    """Seeded signatures. Bodies start with byte runs common in x86-64 code
    or with API words, so matchers meet realistic partial hits."""
    IDIOMS = [b"\x48\x89", b"\x48\x8b", b"\x55\x48\x89\xe5", b"\x41\x57\x41\x56", b"\x0f\x1f\x44\x00", b"\xe8", b"\x48\x83\xec", b"\x00\x00\x00"]
    WORDS = [b"socket", b"connect", b"/bin/sh", b"/tmp/", b"http://", b"GLIBC_2.", b"memcpy", b"password", b"wget ", b"curl ", b"chmod ", b"base64"]

    def __init__(self, seed):
        self.r = random.Random(seed)

    def bytes(self, n):
        return bytes(self.r.getrandbits(8) for _ in range(n))

    def body(self):
        """(ClamAV hex, YARA hex)"""
        k = self.r.random()
        if k < 0.3:
            parts = [self.r.choice(self.IDIOMS) + self.bytes(self.r.randint(8, 14))]
        elif k < 0.4:
            parts = [self.r.choice(self.WORDS) + bytes(self.r.choice(b"abcdefghijklmnopqrstuvwxyz0123456789_") for _ in range(5))]
        elif k < 0.55:
            a, b = self.bytes(self.r.randint(4, 8)), self.bytes(self.r.randint(4, 8))
            parts = [a, ("gap", self.r.choice((8, 16, 32))), b] if self.r.random() < 0.5 else [a, ("any",), b]
        else:
            parts = [self.bytes(self.r.randint(12, 24))]
        cl, ya = "", []
        for p in parts:
            if isinstance(p, bytes):
                cl += p.hex()
                ya += ["%02X" % c for c in p]
            elif p[0] == "gap":
                cl += "{-%d}" % p[1]
                ya.append("[0-%d]" % p[1])
            else:
                cl += "??"
                ya.append("??")
        return cl, "{ " + " ".join(ya) + " }"

    def write(self, db, yara, n_hdb, n_hsb, n_ndb, n_ldb):
        os.makedirs(db, exist_ok=True)
        rules = []
        with open(f"{db}/synth.hdb", "w") as f:
            for i in range(n_hdb):
                f.write("%s:%d:Synth.Hash.MD5-%d\n" % (hashlib.md5(b"h%d" % i).hexdigest(), self.r.randint(1024, 8 << 20), i))
        with open(f"{db}/synth.hsb", "w") as f:
            for i in range(n_hsb):
                f.write("%s:%d:Synth.Hash.SHA256-%d\n" % (hashlib.sha256(b"s%d" % i).hexdigest(), self.r.randint(1024, 8 << 20), i))
        with open(f"{db}/synth.ndb", "w") as f:
            for i in range(n_ndb):
                cl, ya = self.body()
                f.write("Synth.Body.NDB-%d:0:*:%s\n" % (i, cl))
                rules.append("rule ndb_%d { strings: $a = %s condition: $a }" % (i, ya))
        with open(f"{db}/synth.ldb", "w") as f:
            for i in range(n_ldb):
                subs = [self.body() for _ in range(self.r.choice((2, 3)))]
                expr = "0&1" if len(subs) == 2 else self.r.choice(("0&1&2", "(0|1)&2"))
                f.write("Synth.Logic.LDB-%d;Engine:51-255,Target:0;%s;%s\n" % (i, expr, ";".join(s[0] for s in subs)))
                cond = {"0&1": "$s0 and $s1", "0&1&2": "all of them", "(0|1)&2": "($s0 or $s1) and $s2"}[expr]
                rules.append("rule ldb_%d { strings: %s condition: %s }" % (i, " ".join("$s%d = %s" % (j, s[1]) for j, s in enumerate(subs)), cond))
        # Real test signatures: the ClamAV test program, EICAR by hash and by body.
        with open(f"{db}/test.hsb", "w") as f:
            f.write("71e7b604d18aefd839e51a39c88df8383bb4c071dc31f87f00a2b5df580d4495:544:ClamAV-Test-File\n")
        with open(f"{db}/test.hdb", "w") as f:
            f.write("44d88612fea8a8f36de82e1278abb02f:68:Local.EICAR.MD5\n")
        with open(f"{db}/test.ndb", "w") as f:
            f.write("Local.EICAR.Body:0:*:%s\n" % (b"EICAR-STANDARD-" + b"ANTIVIRUS-TEST-FILE").hex())
        rules.append('rule eicar { strings: $e = "EICAR-STANDARD-' + 'ANTIVIRUS-TEST-FILE" condition: $e }')
        rules.append('rule clamav_test { strings: $s = "[CLAMAV]" $i = "CLAMessageBoxA" condition: uint16(0) == 0x5A4D and all of them }')
        if yara:
            with open(yara, "w") as f:
                f.write("\n".join(rules) + "\n")


def timed(cmd, log):
    """Wall seconds and peak RSS (MiB) of a command under /usr/bin/time."""
    t = log + ".time"
    t0 = time.monotonic()
    with open(log, "w") as out:
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", t] + cmd, stdout=out, stderr=subprocess.STDOUT)
    wall = time.monotonic() - t0
    with open(t) as f:
        rss = int(f.read().split()[-1]) / 1024
    return wall, rss


def count_found(log):
    with open(log, errors="replace") as f:
        return sum(1 for line in f if line.rstrip().endswith(" FOUND"))


def yara_files(log, corpus):
    with open(log, errors="replace") as f:
        return len({line.split(" ", 1)[1].strip() for line in f if " " + corpus in line})


def warm(work):
    with open(f"{work}/corpus.list") as f:
        for p in f.read().split():
            with open(p, "rb") as g:
                while g.read(1 << 20):
                    pass


def engine(bindir, defs, work, threads):
    out = subprocess.run([f"{bindir}/mdatp-bench", "scan", "--definitions", defs, "--list", f"{work}/corpus.list",
                          "--threads", str(threads), "--archives"], capture_output=True, text=True, check=True).stdout.split("\n")[-2]
    return dict(kv.split("=") for kv in out.split()[1:])


def suite_rss(s):
    total = 0
    for pid in [s.p.pid] + list(s.pids().values()):
        with open(f"/proc/{pid}/status") as f:
            total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return total / 1024


def product(bindir, db, work, version):
    """The suite with `db` as a signed definitions update; cold and warm custom scans."""
    src = f"{work}/product-defs-{version}"
    shutil.copytree(db, src)
    with open(f"{src}/VERSION", "w") as f:
        f.write(version + "\n")
    root = os.path.dirname(os.path.dirname(bindir))
    subprocess.run(["bash", f"{root}/packaging/make-definitions.sh", src, f"{root}/.build/keys", f"{work}/product-pkg-{version}"], check=True, capture_output=True)
    s = Suite(bindir, {"antivirusEngine": {"enforcementLevel": "on_demand"}})
    try:
        cli = [f"{bindir}/mdatp"]
        env = dict(os.environ, MDATP_PREFIX=s.prefix)
        up = subprocess.run(cli + ["definitions", "update", "--source", f"{work}/product-pkg-{version}/package"], capture_output=True, text=True, env=env)
        if up.returncode != 0:
            raise SystemExit("definitions update refused: " + up.stdout + up.stderr)
        runs = []
        for _ in range(2):
            t0 = time.monotonic()
            r = subprocess.run(cli + ["scan", "custom", "--path", f"{work}/corpus", "--output", "json"], capture_output=True, text=True, check=True, env=env)
            runs.append((time.monotonic() - t0, json.loads(r.stdout)))
        scanner = s.pids()["scanner"]
        with open(f"/proc/{scanner}/status") as f:
            hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
        return runs, hwm
    finally:
        s.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--corpus-mb", type=int, default=400)
    ap.add_argument("--big", action="store_true", help="also 1.3 M+ signatures on a 150 MiB corpus")
    a = ap.parse_args()
    for tool in ["clamscan", "clamd", "clamdscan", "yara", "/usr/bin/time"]:
        if not shutil.which(tool):
            raise SystemExit(f"missing {tool}: make bench-scan installs clamav, clamav-daemon, clamdscan, yara, time")
    work = tempfile.mkdtemp(prefix="mdatp-bench-scan-")
    try:
        nfiles, nbytes = make_corpus(work, a.corpus_mb)
        mib = nbytes / 1048576
        print(f"corpus: {nfiles} files, {mib:.0f} MiB", flush=True)
        Synth(20261129).write(f"{work}/db", f"{work}/rules.yar", 5000, 2000, 3000, 500)
        rows = {}

        def add(name, wall, rss, found):
            rows.setdefault(name, []).append((wall, rss, found))
            print(f"  {name}: {wall:.2f} s, {mib / wall:.1f} MiB/s, {nfiles / wall:.0f} files/s, peak RSS {rss:.0f} MiB, detections {found}", flush=True)

        conf = f"{work}/clamd.conf"
        with open(conf, "w") as f:
            f.write(f"Foreground yes\nLocalSocket {work}/clamd.sock\nDatabaseDirectory {work}/db\nTemporaryDirectory {work}\n"
                    f"LogFile {work}/clamd.log\nMaxThreads 3\nUser root\n")
        for i in range(a.runs):
            print(f"run {i + 1}", flush=True)
            warm(work)
            w, r = timed(["clamscan", "-r", "-i", "-d", f"{work}/db", f"{work}/corpus"], f"{work}/clamscan.log")
            add("clamscan -r (1 thread, with DB load)", w, r, count_found(f"{work}/clamscan.log"))
            clamd = subprocess.Popen(["clamd", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(240):
                if subprocess.run(["clamdscan", "-c", conf, "--ping", "1"], capture_output=True).returncode == 0:
                    break
                time.sleep(0.5)
            for label in ["clamdscan --multiscan (2 workers, cold)", "clamdscan --multiscan (clean cache)"]:
                w, _ = timed(["clamdscan", "-c", conf, "--multiscan", "-i", f"{work}/corpus"], f"{work}/clamdscan.log")
                with open(f"/proc/{clamd.pid}/status") as f:
                    r = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
                add(label, w, r, count_found(f"{work}/clamdscan.log"))
            clamd.send_signal(signal.SIGTERM)
            clamd.wait(60)
            w, r = timed(["yara", "-r", "-p", "2", f"{work}/rules.yar", f"{work}/corpus"], f"{work}/yara.log")
            add("yara -r -p 2 (same bodies as rules, with compile)", w, r, yara_files(f"{work}/yara.log", f"{work}/corpus"))
            for t in (1, 2):
                e = engine(a.bin, f"{work}/db", work, t)
                add(f"mdatp engine, {t} thread(s) (in process, scan only)", float(e["scan_s"]), float(e["maxrss_MiB"]), int(e["detections"]))
                print(f"    (definitions load and Hyperscan compile: {float(e['load_s']):.2f} s)", flush=True)
            runs, hwm = product(a.bin, f"{work}/db", work, f"9.0.{i}.0")
            for (wall, summ), label in zip(runs, ["mdatp scan custom (product, cold)", "mdatp scan custom (product, warm cache)"]):
                add(label, wall, hwm, len(summ.get("threats", [])))
            print(f"  warm run: {runs[1][1].get('cache_hits')} of {runs[1][1].get('scanned')} files from the cache", flush=True)
        results(rows, mib, nfiles, a.runs)
        # Memory of the whole suite, idle, default definitions.
        mem = []
        for _ in range(a.runs):
            s = Suite(a.bin)
            try:
                time.sleep(2)
                mem.append(suite_rss(s))
            finally:
                s.stop()
        print(f"suite resident memory, idle, default definitions: {med(mem):.0f} MiB (watchdog + every room; runs {[round(m) for m in mem]}; aim <= 150 MB)")
        if a.big:
            big(a, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def results(rows, mib, nfiles, runs):
    print(f"\n== results: {mib:.0f} MiB, {nfiles} files, median of {runs} interleaved runs ==")
    speed = {}
    for name, v in rows.items():
        wall, rss, found = med([x[0] for x in v]), med([x[1] for x in v]), v[-1][2]
        speed[name] = mib / wall
        print(f"{name:58s} {wall:7.2f} s {mib / wall:8.1f} MiB/s {nfiles / wall:7.0f} files/s  peak RSS {rss:5.0f} MiB  detections {found}")
    def ratio(a, b):
        ka = next(k for k in speed if k.startswith(a)); kb = next(k for k in speed if k.startswith(b))
        return speed[ka] / speed[kb]
    print(f"ratio product cold / clamscan:          {ratio('mdatp scan custom (product, cold', 'clamscan'):.1f}x  (aim >= 4x)")
    print(f"ratio product cold / clamdscan (cold):  {ratio('mdatp scan custom (product, cold', 'clamdscan --multiscan (2 workers, cold'):.1f}x")
    print(f"ratio product cold / yara -p 2:         {ratio('mdatp scan custom (product, cold', 'yara'):.1f}x  (aim >= 1x)")
    print(f"ratio engine 2 threads / clamscan:      {ratio('mdatp engine, 2', 'clamscan'):.1f}x")
    print(f"ratio warm / cold rescan (product):     {ratio('mdatp scan custom (product, warm', 'mdatp scan custom (product, cold'):.1f}x  (aim >= 20x)")
    print(f"ratio clamd clean cache / clamd cold:   {ratio('clamdscan --multiscan (clean', 'clamdscan --multiscan (2 workers, cold'):.1f}x")


def big(a, work):
    """1.3 M+ signatures: our engine and clamscan on a 150 MiB slice of the corpus."""
    with open(f"{work}/corpus.list") as f:
        paths = f.read().split()
    keep, total = [], 0
    for p in paths:
        total += os.path.getsize(p)
        if total > 150 << 20:
            break
        keep.append(p)
    with open(f"{work}/corpus.list", "w") as f:
        f.write("\n".join(keep) + "\n")
    mib = sum(os.path.getsize(p) for p in keep) / 1048576
    Synth(7).write(f"{work}/bigdb", None, 1_000_000, 300_000, 20_000, 2_000)
    n = 1_000_000 + 300_000 + 20_000 + 2_000 + 3
    print(f"\n== big: {n} signatures, {mib:.0f} MiB, {len(keep)} files ==", flush=True)
    e = engine(a.bin, f"{work}/bigdb", work, 2)
    print(f"mdatp engine, 2 threads: load {float(e['load_s']):.1f} s, scan {mib / float(e['scan_s']):.1f} MiB/s (aim >= 100), peak RSS {float(e['maxrss_MiB']):.0f} MiB")
    e1 = engine(a.bin, f"{work}/bigdb", work, 1)
    print(f"mdatp engine, 1 thread:  load {float(e1['load_s']):.1f} s, scan {mib / float(e1['scan_s']):.1f} MiB/s, peak RSS {float(e1['maxrss_MiB']):.0f} MiB")
    lst = f"{work}/big.list"
    with open(lst, "w") as f:
        f.write("\n".join(keep) + "\n")
    w, r = timed(["clamscan", "-i", "-d", f"{work}/bigdb", "-f", lst], f"{work}/clamscan-big.log")
    print(f"clamscan (1 thread, with DB load): {w:.1f} s, {mib / w:.1f} MiB/s, peak RSS {r:.0f} MiB")


if __name__ == "__main__":
    main()
