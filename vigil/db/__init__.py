"""The SQL store: models, engines and sessions, and the schema's migrations."""
