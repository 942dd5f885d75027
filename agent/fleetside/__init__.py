"""The fleet service: `fleetnode fleet serve`. A durable dispatcher, its HTTP API and its store.

- store.py: the database (SQLite or PostgreSQL): batches, tasks, attempts, results, cars,
  reputations, credits, tokens; every query on them;
- replication.py: the adaptive replication rule and the credit formula (pure, no I/O);
- dispatcher.py: the MQTT side, sending attempts and taking results through the store;
- api.py: the HTTP JSON API on Starlette;
- dashboard.py: the dashboard's pages (static/) and its live data routes, mounted by api.py;
- cli.py: `fleet serve` and `fleet tokens`.

The car never imports this package; it shares only agent/fleet/protocol.py with it.
"""
