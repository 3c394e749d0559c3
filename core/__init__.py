"""Cross-cutting pieces: settings, database, security, errors, text normalisation."""
