"""`flashsale bench`: one hot-SKU workload run against every design, side by side.

workload.py      the buyers, the two phases, the counts and latencies every design reports
redis_designs    redis-limit (our reserve script by SHA, pipelined) and the in-process engine
zero_loss        engine-ack: the engine in zero-loss mode (WAIT for a replica), priced against it
pg_designs       pg-occ and pg-conditional on Postgres (psycopg 3 async pool)
http_design      engine-http: the API (started by the caller) driven from a separate process
memory.py        Redis bytes per active hold and per finished reservation
report.py        the rows, the JSON and Markdown files
"""
