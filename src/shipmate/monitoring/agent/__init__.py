"""The monitoring agent (``shipmate monitor``): spool channels in, the service's ingest route out."""
