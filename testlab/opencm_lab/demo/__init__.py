"""The end-to-end demo: what an administrator builds and what a user then sees, run for real."""
