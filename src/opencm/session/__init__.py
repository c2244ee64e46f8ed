"""Sessions: the connection state machine, its runner, the daemon that owns sessions and links."""
