"""Peer: pybreaker's consecutive-failure CircuitBreaker on the same outcome streams (simulated clock)."""
import contextlib
import json
import sys
import time

import pybreaker


class FakeClock:
    now_s = 0.0
    @classmethod
    def now(cls, tz=None):
        import datetime as dt
        return dt.datetime.fromtimestamp(cls.now_s, tz=dt.UTC)

pybreaker.datetime = FakeClock  # pybreaker reads datetime.now(UTC) for reset_timeout

class Opens(pybreaker.CircuitBreakerListener):
    def __init__(self):
        self.opened = []
        self.closed = []
    def state_change(self, cb, old, new):
        (self.opened if new.name == "open" else self.closed if new.name == "closed" else []).append(FakeClock.now_s)

def run(stream, fail_max):
    lst = Opens()
    cb = pybreaker.CircuitBreaker(fail_max=fail_max, reset_timeout=30, listeners=[lst])
    def ok(): return 1
    def bad(): raise RuntimeError("5xx")
    for at, err in stream:
        FakeClock.now_s = at
        with contextlib.suppress(RuntimeError, pybreaker.CircuitBreakerError):
            cb.call(bad if err else ok)
    return {"opened": lst.opened, "closed": lst.closed}

with open(sys.argv[1]) as handle:
    data = json.load(handle)
out = {}
for fail_max in (5, 10):
    t0 = time.perf_counter()
    n = 0
    res = {}
    for name, stream in data.items():
        res[name] = run(stream, fail_max)
        n += len(stream)
    out[f"pybreaker(fail_max={fail_max})"] = {"results": res, "per_update_us": (time.perf_counter() - t0) / n * 1e6}
json.dump(out, sys.stdout)
