"""Guards that keep one record from stopping a stage: producer event time is bounded by
the worker's clock (:mod:`streams.guard.clock`), a record a stage cannot handle becomes a
content-free dead letter (:mod:`streams.guard.poison`), and a sink batch is stored whatever
days it spans or whichever rows ClickHouse refuses (:mod:`streams.guard.sink_rows`)."""
