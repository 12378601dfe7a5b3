"""A realistic traffic simulator: routes with their own prompt domains (the corpus shipped in
``corpus/``, written for this project), diurnal Poisson arrivals, A/B model splits, agent
runs with tool calls, retries, refusals, errors, users' own PII and its echoes, pasted
secrets, and every incident of the governance story as a named, parameterised scenario with
a truth file. It is to replace the toy ``streams.loadgen`` where realism matters (demo,
tests, benchmarks: issue 19), so detectors are judged on traffic that looks like production;
today it feeds ``warden sim`` and the realistic-day tests.

``SimDay(...).traces()`` is the day; ``SimDay.write(dir)`` writes it for ``warden replay``;
``streams.sim.publish`` sends it to Kafka with event time compressed (``--speedup``).
The subpackage only imports what it needs lazily: ``streams.sim.corpus`` alone stays cheap.
"""
