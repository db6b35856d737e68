#!/usr/bin/env python3
"""make bench-sensor: the sensor's cost and throughput, each against a run
without the sensor in the same invocation, interleaved, medians over runs.

  exec storm   : 1,600 exec/s of a static no-op for N s; collector+EDR CPU %
                 of one core, machine busy cores vs baseline, lifecycle drops
  file storm   : open+write+close by 2 writers, ops/s vs baseline, drops
  kernel->EDR  : paced file events at rising rates; the highest rate the EDR
                 stored with zero drops, in events/s
"""
import argparse, json, os, shutil, signal, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))


def build_tools(out):
    os.makedirs(out, exist_ok=True)
    subprocess.run(["gcc", "-O2", "-static", "-o", f"{out}/noop", f"{HERE}/noop.c"], check=True)
    subprocess.run(["gcc", "-O2", "-o", f"{out}/execstorm", f"{HERE}/execstorm.c"], check=True)
    subprocess.run(["gcc", "-O2", "-o", f"{out}/filestorm", f"{HERE}/filestorm.c"], check=True)


def busy_jiffies():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def proc_cpu(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return dict(kv.split("=") for kv in out.split())


class Suite:
    def __init__(self, bindir, config=None):
        self.bindir = bindir
        self.prefix = tempfile.mkdtemp(prefix="mdatp-bench-")
        os.chmod(self.prefix, 0o755)
        os.makedirs(f"{self.prefix}/etc/opt/mdatp")
        with open(f"{self.prefix}/etc/opt/mdatp/mdatp.json", "w") as f:
            json.dump({"sensor": {"statusIntervalSeconds": 1, "heartbeatSeconds": 0.5}, **(config or {})}, f)
        self.log = open(f"{self.prefix}/watchdog.log", "w")
        self.p = subprocess.Popen([f"{bindir}/mdatp-watchdog", "--prefix", self.prefix], stdout=self.log, stderr=self.log)
        deadline = time.time() + 120
        while time.time() < deadline:
            s = self.status()
            if s and all(r.get("state") == "running" for r in s["rooms"]) and "emitted" in s.get("kernel", {}):
                return
            time.sleep(0.3)
        raise SystemExit("suite did not start; see " + self.log.name)

    def status(self):
        path = f"{self.prefix}/var/opt/mdatp/status.json"
        if not os.path.exists(path):
            return None
        self.p.send_signal(signal.SIGUSR1)
        time.sleep(0.2)
        with open(path) as f:
            return json.load(f)

    def pids(self):
        return {r["name"]: r["pid"] for r in self.status()["rooms"]}

    def counters(self):
        s = self.status()
        edr = next(r for r in s["rooms"] if r["name"] == "edr")["counters"]
        ring = s["rings"][0]
        return {"kernel_drops": dict(s["kernel"]["drops"]), "ring_drops": ring["drops"], "stored": edr["events_stored"],
                "lag": ring["consumer_lag"], "emitted": sum(s["kernel"]["emitted"].values())}

    def wait_drained(self, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            c = self.counters()
            if c["lag"] == 0:
                return c
            time.sleep(0.2)
        return self.counters()

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(120)
        except subprocess.TimeoutExpired:
            self.p.kill()
        shutil.rmtree(self.prefix, ignore_errors=True)


def med(v):
    v = sorted(v)
    return v[len(v) // 2]


def exec_storm(tools, seconds, suite=None):
    pids = suite.pids() if suite else {}
    cpu0 = {n: proc_cpu(p) for n, p in pids.items()}
    c0 = suite.counters() if suite else None
    b0, t0 = busy_jiffies()
    w0 = time.time()
    r = run([f"{tools}/execstorm", "1600", str(seconds), f"{tools}/noop"])
    wall = time.time() - w0
    b1, t1 = busy_jiffies()
    out = {"rate": float(r["rate"]), "busy_cores": (b1 - b0) / (t1 - t0) * os.cpu_count()}
    if suite:
        c1 = suite.wait_drained()
        out["sensor_cpu_pct"] = sum(proc_cpu(p) - cpu0[n] for n, p in pids.items()) / wall * 100
        out["collector_cpu_pct"] = (proc_cpu(pids["collector"]) - cpu0["collector"]) / wall * 100
        out["edr_cpu_pct"] = (proc_cpu(pids["edr"]) - cpu0["edr"]) / wall * 100
        out["lifecycle_drops"] = c1["kernel_drops"]["process"] - c0["kernel_drops"]["process"]
        out["ring_drops"] = c1["ring_drops"] - c0["ring_drops"]
        out["stored"] = c1["stored"] - c0["stored"]
    return out


def file_storm(tools, seconds, workdir, suite=None):
    c0 = suite.counters() if suite else None
    r = run([f"{tools}/filestorm", str(seconds), "2", workdir])
    out = {"rate": float(r["rate"]), "ops": int(r["ops"])}
    if suite:
        c1 = suite.wait_drained()
        out["kernel_drops"] = sum(c1["kernel_drops"].values()) - sum(c0["kernel_drops"].values())
        out["ring_drops"] = c1["ring_drops"] - c0["ring_drops"]
        out["stored"] = c1["stored"] - c0["stored"]
    return out


def edr_throughput(tools, workdir, suite, rates, seconds=3):
    """Highest paced rate (events/s) that reaches the store with zero drops."""
    best = 0
    rows = []
    for rate in rates:
        c0 = suite.wait_drained()
        t0 = time.time()
        # 2 events per op (open-for-write, close-after-write), one writer.
        run([f"{tools}/filestorm", str(seconds), "1", workdir, str(rate // 2)])
        c1 = suite.wait_drained()
        el = time.time() - t0
        drops = (sum(c1["kernel_drops"].values()) - sum(c0["kernel_drops"].values())) + (c1["ring_drops"] - c0["ring_drops"])
        stored = c1["stored"] - c0["stored"]
        rows.append((rate, stored, drops, stored / el))
        if drops == 0:
            best = max(best, stored / el)
        else:
            break
    return best, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--exec-seconds", type=int, default=10)
    ap.add_argument("--file-seconds", type=int, default=5)
    a = ap.parse_args()
    tools = tempfile.mkdtemp(prefix="mdatp-bench-tools-")
    work = tempfile.mkdtemp(prefix="mdatp-bench-work-")
    build_tools(tools)
    base_exec, sens_exec, base_file, sens_file = [], [], [], []
    for i in range(a.runs):
        base_exec.append(exec_storm(tools, a.exec_seconds))
        base_file.append(file_storm(tools, a.file_seconds, work))
        s = Suite(a.bin)
        try:
            sens_exec.append(exec_storm(tools, a.exec_seconds, s))
            sens_file.append(file_storm(tools, a.file_seconds, work, s))
            if i == a.runs - 1:
                best, rows = edr_throughput(tools, work, s, [10_000, 20_000, 40_000, 80_000, 160_000, 320_000])
        finally:
            s.stop()
        print(f"run {i + 1}: exec base {base_exec[-1]} sensor {sens_exec[-1]}", flush=True)
        print(f"run {i + 1}: file base {base_file[-1]} sensor {sens_file[-1]}", flush=True)

    def col(rows, k):
        return [r[k] for r in rows]

    print("\n== results (median of %d interleaved runs) ==" % a.runs)
    be, se = med(col(base_exec, "busy_cores")), med(col(sens_exec, "busy_cores"))
    print(f"exec storm: achieved {med(col(sens_exec, 'rate')):.0f} exec/s with sensor, {med(col(base_exec, 'rate')):.0f} without")
    print(f"exec storm: collector+EDR CPU {med(col(sens_exec, 'sensor_cpu_pct')):.2f} % of a core "
          f"(collector {med(col(sens_exec, 'collector_cpu_pct')):.2f} %, EDR {med(col(sens_exec, 'edr_cpu_pct')):.2f} %; runs {[round(x, 2) for x in col(sens_exec, 'sensor_cpu_pct')]})")
    print(f"exec storm: machine busy {se:.3f} cores vs {be:.3f} without: ratio {se / be:.3f}")
    print(f"exec storm: lifecycle drops {col(sens_exec, 'lifecycle_drops')}, ring drops {col(sens_exec, 'ring_drops')}, events stored {col(sens_exec, 'stored')}")
    bf, sf = med(col(base_file, "rate")), med(col(sens_file, "rate"))
    print(f"file storm: {sf:.0f} ops/s with sensor vs {bf:.0f} without: ratio {sf / bf:.3f} (runs {[round(x) for x in col(sens_file, 'rate')]} vs {[round(x) for x in col(base_file, 'rate')]})")
    print(f"file storm: kernel drops {col(sens_file, 'kernel_drops')}, ring drops {col(sens_file, 'ring_drops')}, stored {col(sens_file, 'stored')}")
    print(f"kernel->EDR: highest paced rate stored with zero drops: {best:.0f} events/s")
    for rate, stored, drops, eps in rows:
        print(f"  paced {rate} ev/s: stored {stored}, drops {drops}, {eps:.0f} ev/s end to end")
    shutil.rmtree(tools, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
