"""Client tools for operators: the shell, backup and restore. They talk to
a cluster over its HTTP API only, like any other client; nothing here
imports the node's own modules."""
