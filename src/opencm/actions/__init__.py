"""Custom actions: the administrator's programs that run at the nine points of a connection."""
