"""Shared plumbing for every SP-E service: settings, database, errors, auth, metrics, logging."""
