"""The durable side: partition streams → Postgres, and Postgres → Redis after a loss.

models, migrations/      the schema (SQLAlchemy 2.0) and its Alembic migrations
entries                  a stream entry → a ledger row, or a PoisonEvent
writer, reservations*    one batch → one Postgres transaction
consumer, worker         the consumer-group loop: read, write, commit, XACK, claim, trim
reconcile, restore       compare Redis with Postgres; rebuild Redis from Postgres
cli, commands            `flashsale worker | db | reconcile | restore`
"""
