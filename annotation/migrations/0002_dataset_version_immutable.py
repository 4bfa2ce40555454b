"""Dataset versions are immutable: the database refuses UPDATE of versions and their rows.

DELETE is refused by the model/queryset guards and PROTECT foreign keys rather than a trigger, so
that test-database flushes (DELETE FROM on SQLite) keep working.
"""

from django.db import migrations

TABLES = ("annotation_datasetversion", "annotation_datasetitem")

SQLITE = [
    f"""CREATE TRIGGER {t}_no_update BEFORE UPDATE ON {t}
    BEGIN SELECT RAISE(ABORT, 'dataset versions are immutable'); END;"""
    for t in TABLES
]
SQLITE_REVERSE = [f"DROP TRIGGER IF EXISTS {t}_no_update;" for t in TABLES]

POSTGRES = [
    """CREATE OR REPLACE FUNCTION rfstudio_refuse_dataset_update() RETURNS trigger AS $$
    BEGIN RAISE EXCEPTION 'dataset versions are immutable'; END; $$ LANGUAGE plpgsql;"""
] + [
    f"""CREATE TRIGGER {t}_no_update BEFORE UPDATE ON {t}
    FOR EACH ROW EXECUTE FUNCTION rfstudio_refuse_dataset_update();"""
    for t in TABLES
]
POSTGRES_REVERSE = [f"DROP TRIGGER IF EXISTS {t}_no_update ON {t};" for t in TABLES] + [
    "DROP FUNCTION IF EXISTS rfstudio_refuse_dataset_update();"
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        for sql in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("annotation", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE, "postgresql": POSTGRES}),
            _run({"sqlite": SQLITE_REVERSE, "postgresql": POSTGRES_REVERSE}),
        )
    ]
