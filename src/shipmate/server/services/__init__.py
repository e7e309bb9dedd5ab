"""Service functions: keyword-only, given a session, raising domain errors; no HTTP here."""
