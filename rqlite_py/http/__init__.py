"""HTTP layer: rqlite's API over a Store (API.md §a)."""
