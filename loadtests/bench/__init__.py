"""`flashsale bench`: one hot-SKU workload run against every design, side by side (issue 7).

workload.py      the buyers, the two phases, the counts and latencies every design reports
redis_designs    redis-limit (our reserve script by SHA, pipelined) and the in-process engine
pg_designs       pg-occ and pg-conditional on Postgres (psycopg 3 async pool)
http_design      engine-http: `flashsale serve --workers 2` driven from a separate process
memory.py        Redis bytes per active hold and per finished reservation
report.py        the rich table, the JSON and Markdown files
cli.py           the `flashsale bench` command
"""
