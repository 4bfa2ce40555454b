"""Shared infrastructure below every app (it imports no app; an import-linter contract): the
authorization policy (`policy`), API error handling and schema helpers (`api`), input bounds
(`limits`), bulk inserts and PostgreSQL COPY (`bulk`, `pgcopy`), queries compiled once per
connection (`prepared`), the user roles (`roles`) and server-side SVG charts (`charts`)."""
