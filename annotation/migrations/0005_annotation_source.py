"""Annotation.source, and the submit trigger fires only for `human` annotations.

Imported labels (source `import`) have no lease to close, and a per-row "submit" audit event made
the trigger the largest part of a bulk import's SQL time; the importer logs one "import" audit
event with its counts instead. On PostgreSQL the trigger's WHEN clause is evaluated without
calling the plpgsql function at all.

Order matters on SQLite: AddField there may rebuild the table, which drops its triggers, so the
old trigger is dropped first and the new one created after the column exists (and the reverse).
"""

from django.db import migrations, models

NOW_SQLITE = "strftime('%Y-%m-%d %H:%M:%f', 'now')"


def _sqlite_trigger(when: str) -> str:
    return f"""CREATE TRIGGER annotation_annotation_ai AFTER INSERT ON annotation_annotation
    {when}
    BEGIN
      UPDATE annotation_assignment SET status = 'submitted', updated_at = {NOW_SQLITE}
        WHERE item_id = NEW.item_id AND annotator_id = NEW.annotator_id AND status = 'active';
      INSERT INTO annotation_auditevent
        (project_id, item_id_ref, actor_id, action, data, created_at)
        SELECT i.project_id, NEW.item_id, NEW.annotator_id, 'submit',
               json_object('annotation', NEW.id, 'label', NEW.label_id,
                           'idempotency_key', NEW.idempotency_key),
               {NOW_SQLITE}
        FROM annotation_item i WHERE i.id = NEW.item_id;
    END;"""


def _pg_trigger(when: str) -> str:
    # The function rfstudio_annotation_submitted() of migration 0004 is unchanged.
    return f"""CREATE TRIGGER annotation_annotation_submitted AFTER INSERT ON annotation_annotation
    FOR EACH ROW {when} EXECUTE FUNCTION rfstudio_annotation_submitted();"""


DROP = {
    "sqlite": ["DROP TRIGGER IF EXISTS annotation_annotation_ai;"],
    "postgresql": [
        "DROP TRIGGER IF EXISTS annotation_annotation_submitted ON annotation_annotation;"
    ],
}
CREATE_NEW = {
    "sqlite": [_sqlite_trigger("WHEN NEW.source = 'human'")],
    "postgresql": [_pg_trigger("WHEN (NEW.source = 'human')")],
}
CREATE_OLD = {"sqlite": [_sqlite_trigger("")], "postgresql": [_pg_trigger("")]}


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        statements = statements_by_vendor.get(schema_editor.connection.vendor)
        if statements is None:
            raise RuntimeError(
                f"annotation triggers exist for PostgreSQL and SQLite only, not "
                f"{schema_editor.connection.vendor}"
            )
        with schema_editor.connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)  # no params: '%' in strftime formats stays literal

    return run


class Migration(migrations.Migration):
    dependencies = [("annotation", "0004_lease_and_audit_triggers")]

    operations = [
        migrations.RunPython(_run(DROP), _run(CREATE_OLD)),
        migrations.AddField(
            model_name="annotation",
            name="source",
            field=models.CharField(
                choices=[("human", "Labeling flow"), ("import", "Bulk import")],
                db_default="human",
                default="human",
                max_length=10,
            ),
        ),
        migrations.RunPython(_run(CREATE_NEW), _run(DROP)),
    ]
