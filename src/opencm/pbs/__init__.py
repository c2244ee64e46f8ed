"""The Phone Book Service: the publish store and the update endpoint."""
