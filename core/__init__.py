"""Shared infrastructure below every app (no app imports; an import-linter contract): bulk
inserts and PostgreSQL COPY (`bulk`, `pgcopy`), queries compiled once per connection
(`prepared`), the user roles (`roles`), server-side SVG charts (`charts`) and API schema helpers
(`api`). The authorization policy lives here too (`policy`, issue 12 part A)."""
