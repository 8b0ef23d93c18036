"""The queue probe: the only part of the operator that talks to the database.

- `depth`: what a probe is asked for and what it answers (`ProbeTarget`, `PoolDepth`, `ProbeError`, the
  orphan-recovery request). Pure: the pool model, the metrics and the handlers import only this.
- `sql`: every statement the operator sends.
- `rows`: turns the one statement's rows into each pool's `PoolDepth` (pure).
- `dsn`: DSN handling: normalise (one key per database), describe (where it points), redact (never the
  password in a message).
- `database`: one database's connections, its tick, its orphan recovery and the classification of errors.
- `hub`: `ProbeHub`, which every pool registers with; it shares one database's connections and ticks among
  its pools and keeps each pool's latest reading.

This file imports nothing, so importing `taskpool_operator.probe.depth` never loads psycopg.
"""
