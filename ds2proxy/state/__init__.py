"""Stores that outlive the process: what ds2proxy remembers across restarts."""
