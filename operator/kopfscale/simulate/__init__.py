"""``kopfscale simulate``: a ScaledApp's policy replayed over a metric trace, tick by tick.

Same code as the operator's round (``policy.step``), a simulated clock, no cluster (except the
read-only ``--from-cluster``). Modules, one job each:

- :mod:`.trace`: CSV and Prometheus ``query_range`` traces; :mod:`.replay`: status history as a trace;
- :mod:`.manifest`: load and validate a manifest as the API server would (:mod:`.schema`, :mod:`.cel`);
- :mod:`.sources`: simulated metric reads (columns; cron from the clock);
- :mod:`.engine`: the tick loop; :mod:`.summary`: the compare maths;
- :mod:`.render`: table/JSON/CSV; :mod:`.plot`: the PNG; :mod:`.command`: the CLI.
"""
