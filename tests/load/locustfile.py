"""Load on `quarry serve` (issue 15, Deliver 6), driven by Locust; scripts/load.sh runs it.

Traffic: a mix of modes, each user sending as a Poisson process of one request a second (`poisson`),
so that the offered load is set by the user count, as in production, and not by how fast the
server answers. Not Locust's `constant_throughput`: users started together stay in step with it,
and 50 requests arriving in the same millisecond every second measured a p50 of 340 ms that no
real traffic would see (the same server answers 120 semantic searches a second one after another).
Each request is a real NFCorpus query (LOAD_QUERIES, a BEIR queries.jsonl), half of them
with a word of another query appended so that the server's query cache seldom answers: the
figures are for first-time queries, its slow case. One hybrid search in ten follows its cursor
to the second page, and one search in five is filtered.

The phase (LOAD_PHASE) sets the user count over time (`LoadShape`):
  sustained  50 users, one request a second each: 50 req/s for LOAD_SECONDS (600)
  spike      50 req/s, then 500 for 30 s, then 50 again: shedding and recovery
  soak       sustained, longer (LOAD_SECONDS, 3600)
Every request is written to LOAD_OUT/requests.csv (start, kind, milliseconds, status,
Retry-After) and the server's resident memory (LOAD_PID) to rss.csv each second: the report
(tests/load/report.py) works from these, not from Locust's own aggregates.
"""

import csv
import json
import os
import random
import threading
import time

import gevent
from locust import FastHttpUser, LoadTestShape, events, task

OUT = os.environ["LOAD_OUT"]
PHASE = os.environ.get("LOAD_PHASE", "sustained")
SECONDS = int(os.environ.get("LOAD_SECONDS", "3600" if PHASE == "soak" else "600"))
RATE = int(os.environ.get("LOAD_RATE", "50"))
SPIKE_AT, SPIKE_FOR = 60, 30

with open(os.environ["LOAD_QUERIES"], encoding="utf-8") as f:
    QUERIES = [json.loads(line)["text"] for line in f if line.strip()]
WORDS = [w for q in QUERIES for w in q.split() if w.isalpha() and len(w) > 3]

_lock = threading.Lock()
_requests = open(os.path.join(OUT, "requests.csv"), "w", newline="", encoding="utf-8")
_writer = csv.writer(_requests)
_writer.writerow(["start", "kind", "ms", "status", "retry_after", "server_ms"])


def _server_ms(response):
    """The server's own time for the request (its `Server-Timing` total), to tell the server's time
    from the wait before it (the listener's backlog, the client's own scheduling)."""
    for part in (response.headers.get("server-timing") or "").split(","):
        name, _, rest = part.strip().partition(";")
        if name == "total" and rest.startswith("dur="):
            return rest[4:]
    return ""


def _record(kind, started, response):
    ms = (time.time() - started) * 1e3
    row = [f"{started:.3f}", kind, f"{ms:.2f}", response.status_code, response.headers.get("retry-after", "")]
    with _lock:
        _writer.writerow(row + [_server_ms(response)])


def _query():
    q = random.choice(QUERIES)
    return q if random.random() < 0.5 else f"{q} {random.choice(WORDS)}"


def poisson(rate):
    """A wait that makes a user's requests a Poisson process of `rate` a second: exponential gaps
    between sends, counted from the last planned send, so a slow answer delays the next send only
    when it outlasts its gap (then it goes at once: a backlog is not caught up in a burst)."""

    def wait(user):
        now = time.monotonic()
        planned = getattr(user, "_planned", now) + random.expovariate(rate)
        user._planned = max(planned, now)
        return user._planned - now

    return wait


class Searcher(FastHttpUser):
    wait_time = poisson(1.0)

    def on_start(self):
        # A user's first request, too, comes after an exponential gap. Locust starts a phase's
        # users in the same instant, and 50 first requests at once (none of real traffic) were
        # shed at the limit of 16 in flight before the Poisson gaps spread them out.
        self._planned = time.monotonic() + random.expovariate(1.0)
        gevent.sleep(self._planned - time.monotonic())

    def _search(self, kind, body):
        started = time.time()
        with self.client.post("/v1/search", json=body, name=kind, catch_response=True) as r:
            _record(kind, started, r)
            if r.status_code == 200:
                r.success()
                return r.json()
            # A shed request (503 with Retry-After) is the server doing its job under a spike; the
            # report counts it apart from errors.
            r.failure(f"{r.status_code}")
        return None

    def _mode(self, mode):
        body = {"query": _query(), "top_k": 10, "mode": mode}
        if random.random() < 0.2:
            body["filter"] = {"format": "markdown"}
        return body

    @task(3)
    def semantic(self):
        self._search("semantic", self._mode("semantic"))

    @task(2)
    def keyword(self):
        self._search("keyword", self._mode("keyword"))

    @task(5)
    def hybrid(self):
        body = self._mode("hybrid")
        page = self._search("hybrid", body)
        if page and page.get("next_cursor") and random.random() < 0.1:
            self._search("next page", dict(body, cursor=page["next_cursor"]))


class LoadShape(LoadTestShape):
    """Users over time: one user is one request a second."""

    def tick(self):
        t = self.get_run_time()
        if PHASE == "spike":
            if t > SPIKE_AT + SPIKE_FOR + 60:
                return None
            users = RATE * 10 if SPIKE_AT <= t < SPIKE_AT + SPIKE_FOR else RATE
            # Users start and stop at this rate: all at once both ways. At the user count's own rate
            # the 450 extra users took 9 s to stop, which read as the server's slow recovery.
            return users, RATE * 10
        if t > SECONDS:
            return None
        return RATE, RATE


def _rss(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _sample_rss():
    pid = os.environ["LOAD_PID"]
    with open(os.path.join(OUT, "rss.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["time", "rss_mb"])
        while True:
            try:
                w.writerow([f"{time.time():.3f}", f"{_rss(pid):.1f}"])
            except OSError:
                w.writerow([f"{time.time():.3f}", "nan"])  # the server is gone: the report says so
            f.flush()
            gevent.sleep(1)


@events.test_start.add_listener
def _start(environment, **_):
    with open(os.path.join(OUT, "started"), "w", encoding="ascii") as f:
        f.write(f"{time.time():.3f}")
    gevent.spawn(_sample_rss)


@events.quitting.add_listener
def _flush(environment, **_):
    with _lock:
        _requests.flush()
