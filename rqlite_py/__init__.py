"""rqlite-py: a replicated SQLite database service speaking rqlite's HTTP API."""

__version__ = "0.1.0"
