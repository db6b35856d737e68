#!/usr/bin/env python3
"""make bench-edr: the EDR's detection stage and its end-to-end latency.

1. Throughput: `mdatp-bench edr` pushes a synthetic event mix through the EDR's
   enrichment and detection (process table, Sigma, built-in behaviours) with
   0, 200 and 2,000 synthetic rules, single thread as the room runs; compared
   with the kernel -> EDR delivery rate measured by bench-sensor, it says
   whether rule evaluation is the pipeline's bottleneck.
2. Latency: the real suite (release build, temporary prefix) with a rule that
   matches a marker on the command line, N execs of /bin/true carrying the
   marker; latency = the alert's raised_ns - the exec's kernel time
   (first_seen_ns). Also run with 200 extra synthetic rules loaded.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)

def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]

RULE = """title: bench latency marker
id: bench-latency
level: low
logsource: {product: linux, category: process_creation}
detection:
    sel:
        CommandLine|contains: 'mdatp-bench-latency-'
    condition: sel
"""

def synthetic_rules(dirpath, n):
    for i in range(n):
        with open(os.path.join(dirpath, f"synthetic-{i}.yml"), "w") as f:
            f.write(f"""title: synthetic {i}
id: synthetic-{i}
level: low
logsource: {{product: linux, category: process_creation}}
detection:
    sel_img:
        Image|endswith: ['/bench{i}', '/bench{i}d']
    sel_cmd:
        CommandLine|contains: ['--bench{i}', ' -x bench{i} ']
    condition: 1 of sel_*
""")

def latency(bindir, execs, extra_rules):
    prefix = tempfile.mkdtemp(prefix="mdatp-bench-edr-")
    os.chmod(prefix, 0o755)  # the rooms run as mdatp and open paths under it
    try:
        os.makedirs(prefix + "/etc/opt/mdatp/rules")
        with open(prefix + "/etc/opt/mdatp/mdatp.json", "w") as f:
            json.dump({"antivirusEngine": {"enforcementLevel": "passive"}, "sensor": {"statusIntervalSeconds": 1}}, f)
        with open(prefix + "/etc/opt/mdatp/rules/bench.yml", "w") as f:
            f.write(RULE)
        synthetic_rules(prefix + "/etc/opt/mdatp/rules", extra_rules)
        log = open(prefix + "/watchdog.log", "w")
        wd = subprocess.Popen([bindir + "/mdatp-watchdog", "--prefix", prefix], stdout=log, stderr=log)
        env = dict(os.environ, MDATP_PREFIX=prefix)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                st = json.load(open(prefix + "/var/opt/mdatp/status.json"))
                if all(r["state"] == "running" for r in st["rooms"] if r["name"] in ("collector", "edr")):
                    break
            except Exception:
                pass
            time.sleep(0.2)
        time.sleep(1)
        for i in range(execs):
            subprocess.run(["/bin/true", f"mdatp-bench-latency-{i}"])
            time.sleep(0.005)
        time.sleep(2)
        r = subprocess.run([bindir + "/mdatp", "edr", "alert", "list", "--output", "json", "--limit", "10000"], env=env, text=True, capture_output=True)
        if r.returncode != 0:
            sys.exit(f"mdatp edr alert list: {r.stderr}\n" + open(prefix + "/watchdog.log").read()[-3000:])
        out = r.stdout
        lat = []
        for line in out.splitlines():
            a = json.loads(line)
            if a["detection_source"] == "sigma:bench-latency":
                lat.append((a["raised_ns"] - a["first_seen_ns"]) / 1e6)
        wd.terminate()
        wd.wait(timeout=60)
        return lat
    finally:
        shutil.rmtree(prefix, ignore_errors=True)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--events", type=int, default=200000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--execs", type=int, default=300)
    a = ap.parse_args()
    print(f"$ {a.bin}/mdatp-bench edr --rules 0,200,2000 --events {a.events} --runs {a.runs}")
    print(run([a.bin + "/mdatp-bench", "edr", "--rules", "0,200,2000", "--events", str(a.events), "--runs", str(a.runs)]).stdout, end="")
    for extra in (0, 200):
        lats = []
        for r in range(a.runs):
            lats.append(latency(a.bin, a.execs, extra))
        got = [len(l) for l in lats]
        p50 = statistics.median(pct(l, 50) for l in lats if l)
        p99 = statistics.median(pct(l, 99) for l in lats if l)
        print(f"exec -> alert latency, {a.execs} execs x {a.runs} runs, {extra + 1} rules loaded: "
              f"p50 {p50:.2f} ms, p99 {p99:.2f} ms (median over runs; alerts per run {got})")

if __name__ == "__main__":
    main()
