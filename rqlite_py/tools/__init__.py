"""Client tools for operators: the shell, backup and restore. They talk to
a cluster over its HTTP API only, like any other client. They reuse the
node's leaf helpers (SQLite's authorizer, file constants, the rule for
when a request may be sent again) but never its store or Raft."""
