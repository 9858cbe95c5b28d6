"""Helpers that write a scenario's files the way production systems produce them.

Used by eval/gen/scenarios.py, which describes each incident; the files it writes under
eval/scenarios/<name>/ are what `aiops eval` reads (see docs/EVAL.md). Times are relative to the run:
sample timestamps are seconds before it (negative), log and alert times are like "-12m30s".

Series are deterministic (a seeded random generator per scenario), counters are monotonic (a restart
resets them to zero, as a real process does), histograms are cumulative with a +Inf bucket.
"""

import json
import math
import os
import random
import urllib.parse

HOURS = 2


class Scenario:
    def __init__(self, name, step=60, seed=None):
        self.name = name
        self.step = step
        self.rng = random.Random(seed if seed is not None else name)
        self.families = []  # (name, type, help, [(labels, [(t, v)])])
        self.logs = []  # (t_seconds, labels, line)
        self.times = list(range(-HOURS * 3600, 0, step))
        # End just before "now", so the newest sample is the last scrape before the run.
        self.times = [t - 15 for t in self.times[1:]] + [-15]
        self.times = sorted(set(self.times))

    # ---- metrics ----
    def noise(self, scale):
        return self.rng.gauss(0, scale)

    def gauge(self, name, help_, series):
        """series: [(labels, f(t) -> value or None)]; None leaves a gap (the series is absent)."""
        out = []
        for labels, f in series:
            points = []
            for t in self.times:
                v = f(t)
                if v is not None:
                    points.append((t, v))
            out.append((labels, points))
        self.families.append((name, "gauge", help_, out))

    def counter(self, name, help_, series, start=None):
        """series: [(labels, rate(t) -> per-second rate, resets=[t...])]. Values are integrated."""
        out = []
        for item in series:
            labels, rate = item[0], item[1]
            resets = sorted(item[2]) if len(item) > 2 else []
            value = start if start is not None else self.rng.uniform(1e3, 1e5)
            points = []
            prev = None
            for t in self.times:
                if prev is not None:
                    r = rate(t)
                    if r is None:
                        prev = t
                        continue
                    value += max(0.0, r) * (t - prev)
                if resets and t >= resets[0]:
                    resets.pop(0)
                    value = max(0.0, rate(t) or 0.0) * self.rng.uniform(0, self.step)
                points.append((t, value))
                prev = t
            out.append((labels, points))
        self.families.append((name, "counter", help_, out))

    def histogram(self, name, help_, buckets, series):
        """series: [(labels, rate(t), latency(t) -> median seconds)]. Log-normal latencies."""
        out_buckets, out_sum, out_count = [], [], []
        for labels, rate, median in series:
            cum = [0.0] * (len(buckets) + 1)
            total_sum = 0.0
            total = 0.0
            pts = {le: [] for le in list(buckets) + ["+Inf"]}
            sum_pts, count_pts = [], []
            prev = None
            for t in self.times:
                if prev is not None:
                    n = max(0.0, rate(t)) * (t - prev)
                    m = median(t)
                    sigma = 0.5
                    for i, le in enumerate(buckets):
                        z = (math.log(le) - math.log(m)) / sigma
                        frac = 0.5 * (1 + math.erf(z / math.sqrt(2)))
                        cum[i] += n * frac
                    cum[-1] += n
                    total += n
                    total_sum += n * m * math.exp(sigma * sigma / 2)
                for i, le in enumerate(list(buckets) + ["+Inf"]):
                    pts[le].append((t, round(cum[i])))
                sum_pts.append((t, total_sum))
                count_pts.append((t, round(total)))
                prev = t
            for le in list(buckets) + ["+Inf"]:
                le_s = "+Inf" if le == "+Inf" else fmt_le(le)
                out_buckets.append(({**labels, "le": le_s}, pts[le]))
            out_sum.append((labels, sum_pts))
            out_count.append((labels, count_pts))
        self.families.append((name, "histogram", help_, {"bucket": out_buckets, "sum": out_sum, "count": out_count}))

    def info(self, name, help_, series):
        """series: [(labels, since, until)]: a constant 1 while the labels hold (a version, a uname)."""
        out = []
        for labels, since, until in series:
            points = [(t, 1) for t in self.times if (since is None or t >= since) and (until is None or t < until)]
            out.append((labels, points))
        self.families.append((name, "gauge", help_, out))

    # ---- logs ----
    def log(self, t, labels, line):
        self.logs.append((t, labels, line))

    def log_every(self, start, end, every, labels, make, jitter=0.3):
        t = start
        i = 0
        while t < end:
            self.log(t, labels, make(i, t))
            t += every * (1 + self.rng.uniform(-jitter, jitter))
            i += 1

    # ---- output ----
    def write(self, root, alert, expect):
        d = os.path.join(root, self.name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "metrics.om"), "w") as f:
            for name, kind, help_, data in self.families:
                f.write(f"# HELP {name} {help_}\n# TYPE {name} {kind}\n")
                if kind == "histogram":
                    for suffix in ("bucket", "sum", "count"):
                        for labels, points in data[suffix]:
                            for t, v in points:
                                f.write(f"{name}_{suffix}{fmt_labels(labels)} {fmt_value(v)} {t}\n")
                else:
                    for labels, points in data:
                        for t, v in points:
                            f.write(f"{name}{fmt_labels(labels)} {fmt_value(v)} {t}\n")
            f.write("# EOF\n")
        with open(os.path.join(d, "logs.jsonl"), "w") as f:
            for t, labels, line in sorted(self.logs, key=lambda x: x[0]):
                f.write(json.dumps({"ts": rel(t), "labels": labels, "line": line}) + "\n")
        with open(os.path.join(d, "alert.json"), "w") as f:
            json.dump(alert, f, indent=2)
            f.write("\n")
        with open(os.path.join(d, "expect.toml"), "w") as f:
            f.write(expect.strip() + "\n")


def fmt_le(le):
    s = repr(float(le))
    return s


def fmt_value(v):
    if isinstance(v, int):
        return str(v)
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.5g}" if abs(v) < 1e4 else f"{v:.9g}"


def fmt_labels(labels):
    if not labels:
        return ""
    parts = []
    for k, v in labels.items():
        v = str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        parts.append(f'{k}="{v}"')
    return "{" + ",".join(parts) + "}"


def rel(t):
    """Seconds before the run as a relative time: -750.4 -> "-12m30s"."""
    t = int(round(t))
    sign = "-" if t < 0 else "+"
    t = abs(t)
    m, s = divmod(t, 60)
    out = sign
    if m:
        out += f"{m}m"
    if s or not m:
        out += f"{s}s"
    return out


def fingerprint(labels):
    import hashlib

    text = "\xff".join(f"{k}\xff{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def alert(expr, labels, annotations, starts_at, prom="http://prometheus-0.monitoring.svc:9090"):
    url = prom + "/graph?g0.expr=" + urllib.parse.quote_plus(expr) + "&g0.tab=1"
    return {
        "status": "firing",
        "labels": labels,
        "annotations": annotations,
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": url,
        "fingerprint": fingerprint(labels),
    }


def group(alerts, group_by, receiver="aiops", external="http://alertmanager-0.monitoring.svc:9093"):
    common_labels = dict(alerts[0]["labels"])
    for a in alerts[1:]:
        common_labels = {k: v for k, v in common_labels.items() if a["labels"].get(k) == v}
    common_ann = dict(alerts[0]["annotations"])
    for a in alerts[1:]:
        common_ann = {k: v for k, v in common_ann.items() if a["annotations"].get(k) == v}
    group_labels = {k: common_labels[k] for k in group_by if k in common_labels}
    key = "{}:{" + ", ".join(f'{k}="{v}"' for k, v in group_labels.items()) + "}"
    return {
        "receiver": receiver,
        "status": "firing",
        "alerts": alerts,
        "groupLabels": group_labels,
        "commonLabels": common_labels,
        "commonAnnotations": common_ann,
        "externalURL": external,
        "version": "4",
        "groupKey": key,
        "truncatedAlerts": 0,
    }


def step(before, after, at):
    """A level that changes at `at` (seconds before the run)."""
    return lambda t: after if t >= at else before


def ramp(before, after, start, end):
    def f(t):
        if t < start:
            return before
        if t >= end:
            return after
        return before + (after - before) * (t - start) / (end - start)

    return f


def daily(base, amplitude, phase=0.0):
    """A slow wave, like the hours of a working day within two hours."""
    return lambda t: base + amplitude * math.sin((t / 3600.0) * math.pi / 2 + phase)
