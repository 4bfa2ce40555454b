"""Database triggers of the annotation queue (PostgreSQL and SQLite).

* Assignment -> Item lease bookkeeping: `lease_count` (active assignments) and `lease_expires_at`
  (earliest expiry among them). The claim is ONE statement (INSERT ... SELECT ... FOR UPDATE SKIP
  LOCKED) whose WHERE reads only item columns; because the trigger updates the item row in the
  same statement, PostgreSQL re-checks those columns on the newest row version (EvalPlanQual)
  before a second claimer can take the same slot.
* Every new active assignment expires the item's leases that ran out ("an expired lease frees
  the item"), and audit events for claim / skip / expire / submit are written here, so the hot
  paths need no extra round trip for them.
* Annotation INSERT marks the annotator's active assignment submitted.
* AuditEvent is append-only: UPDATE and DELETE are refused. On PostgreSQL TRUNCATE (used only by
  `manage.py flush`) still works; on SQLite `flush` deletes rows, which our flush command allows
  through the per-connection SQL function rfstudio_audit_purge_allowed() (annotation/apps.py).
"""

from django.db import migrations

NOW_SQLITE = "strftime('%Y-%m-%d %H:%M:%f', 'now')"

SQLITE = [
    f"""CREATE TRIGGER annotation_assignment_ai AFTER INSERT ON annotation_assignment
    WHEN NEW.status = 'active'
    BEGIN
      UPDATE annotation_item SET lease_count = lease_count + 1,
        lease_expires_at = CASE WHEN lease_expires_at IS NULL OR NEW.expires_at < lease_expires_at
                                THEN NEW.expires_at ELSE lease_expires_at END
        WHERE id = NEW.item_id;
      INSERT INTO annotation_auditevent (project_id, item_id_ref, actor_id, action, data, created_at)
        VALUES (NEW.project_id, NEW.item_id, NEW.annotator_id, 'claim',
                json_object('assignment', NEW.id, 'expires_at', NEW.expires_at), {NOW_SQLITE});
      UPDATE annotation_assignment SET status = 'expired', updated_at = {NOW_SQLITE}
        WHERE item_id = NEW.item_id AND status = 'active' AND expires_at < {NOW_SQLITE}
          AND id <> NEW.id;
    END;""",
    f"""CREATE TRIGGER annotation_assignment_au AFTER UPDATE OF status, expires_at
    ON annotation_assignment
    WHEN OLD.status <> NEW.status OR OLD.expires_at <> NEW.expires_at
    BEGIN
      UPDATE annotation_item SET
        lease_count = lease_count + (NEW.status = 'active') - (OLD.status = 'active'),
        lease_expires_at = (SELECT MIN(a.expires_at) FROM annotation_assignment a
                            WHERE a.item_id = NEW.item_id AND a.status = 'active')
        WHERE id = NEW.item_id;
      INSERT INTO annotation_auditevent (project_id, item_id_ref, actor_id, action, data, created_at)
        SELECT NEW.project_id, NEW.item_id, NEW.annotator_id,
               CASE NEW.status WHEN 'skipped' THEN 'skip' ELSE 'expire' END,
               json_object('assignment', NEW.id), {NOW_SQLITE}
        WHERE OLD.status = 'active' AND NEW.status IN ('skipped', 'expired');
    END;""",
    """CREATE TRIGGER annotation_assignment_ad AFTER DELETE ON annotation_assignment
    WHEN OLD.status = 'active'
    BEGIN
      UPDATE annotation_item SET lease_count = lease_count - 1,
        lease_expires_at = (SELECT MIN(a.expires_at) FROM annotation_assignment a
                            WHERE a.item_id = OLD.item_id AND a.status = 'active')
        WHERE id = OLD.item_id;
    END;""",
    f"""CREATE TRIGGER annotation_annotation_ai AFTER INSERT ON annotation_annotation
    BEGIN
      UPDATE annotation_assignment SET status = 'submitted', updated_at = {NOW_SQLITE}
        WHERE item_id = NEW.item_id AND annotator_id = NEW.annotator_id AND status = 'active';
      INSERT INTO annotation_auditevent (project_id, item_id_ref, actor_id, action, data, created_at)
        SELECT i.project_id, NEW.item_id, NEW.annotator_id, 'submit',
               json_object('annotation', NEW.id, 'label', NEW.label_id,
                           'idempotency_key', NEW.idempotency_key),
               {NOW_SQLITE}
        FROM annotation_item i WHERE i.id = NEW.item_id;
    END;""",
    """CREATE TRIGGER annotation_auditevent_no_update BEFORE UPDATE ON annotation_auditevent
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;""",
    """CREATE TRIGGER annotation_auditevent_no_delete BEFORE DELETE ON annotation_auditevent
    WHEN NOT rfstudio_audit_purge_allowed()
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;""",
]
SQLITE_REVERSE = [
    f"DROP TRIGGER IF EXISTS {name};"
    for name in (
        "annotation_assignment_ai",
        "annotation_assignment_au",
        "annotation_assignment_ad",
        "annotation_annotation_ai",
        "annotation_auditevent_no_update",
        "annotation_auditevent_no_delete",
    )
]

POSTGRES = [
    """CREATE OR REPLACE FUNCTION rfstudio_assignment_sync() RETURNS trigger AS $$
    BEGIN
      IF TG_OP = 'INSERT' THEN
        IF NEW.status = 'active' THEN
          UPDATE annotation_item SET lease_count = lease_count + 1,
            lease_expires_at = LEAST(COALESCE(lease_expires_at, NEW.expires_at), NEW.expires_at)
            WHERE id = NEW.item_id;
          INSERT INTO annotation_auditevent
            (project_id, item_id_ref, actor_id, action, data, created_at)
            VALUES (NEW.project_id, NEW.item_id, NEW.annotator_id, 'claim',
                    jsonb_build_object('assignment', NEW.id, 'expires_at', NEW.expires_at),
                    clock_timestamp());
          UPDATE annotation_assignment SET status = 'expired', updated_at = clock_timestamp()
            WHERE item_id = NEW.item_id AND status = 'active'
              AND expires_at < clock_timestamp() AND id <> NEW.id;
        END IF;
        RETURN NULL;
      ELSIF TG_OP = 'UPDATE' THEN
        IF OLD.status = NEW.status AND OLD.expires_at = NEW.expires_at THEN
          RETURN NULL;
        END IF;
        UPDATE annotation_item SET
          lease_count = lease_count + (CASE WHEN NEW.status = 'active' THEN 1 ELSE 0 END)
                                    - (CASE WHEN OLD.status = 'active' THEN 1 ELSE 0 END),
          lease_expires_at = (SELECT MIN(a.expires_at) FROM annotation_assignment a
                              WHERE a.item_id = NEW.item_id AND a.status = 'active')
          WHERE id = NEW.item_id;
        IF OLD.status = 'active' AND NEW.status IN ('skipped', 'expired') THEN
          INSERT INTO annotation_auditevent
            (project_id, item_id_ref, actor_id, action, data, created_at)
            VALUES (NEW.project_id, NEW.item_id, NEW.annotator_id,
                    CASE NEW.status WHEN 'skipped' THEN 'skip' ELSE 'expire' END,
                    jsonb_build_object('assignment', NEW.id), clock_timestamp());
        END IF;
        RETURN NULL;
      ELSE
        IF OLD.status = 'active' THEN
          UPDATE annotation_item SET lease_count = lease_count - 1,
            lease_expires_at = (SELECT MIN(a.expires_at) FROM annotation_assignment a
                                WHERE a.item_id = OLD.item_id AND a.status = 'active')
            WHERE id = OLD.item_id;
        END IF;
        RETURN NULL;
      END IF;
    END; $$ LANGUAGE plpgsql;""",
    """CREATE TRIGGER annotation_assignment_sync AFTER INSERT OR UPDATE OR DELETE
    ON annotation_assignment FOR EACH ROW EXECUTE FUNCTION rfstudio_assignment_sync();""",
    """CREATE OR REPLACE FUNCTION rfstudio_annotation_submitted() RETURNS trigger AS $$
    BEGIN
      UPDATE annotation_assignment SET status = 'submitted', updated_at = clock_timestamp()
        WHERE item_id = NEW.item_id AND annotator_id = NEW.annotator_id AND status = 'active';
      INSERT INTO annotation_auditevent
        (project_id, item_id_ref, actor_id, action, data, created_at)
        SELECT i.project_id, NEW.item_id, NEW.annotator_id, 'submit',
               jsonb_build_object('annotation', NEW.id, 'label', NEW.label_id,
                                  'idempotency_key', NEW.idempotency_key),
               clock_timestamp()
        FROM annotation_item i WHERE i.id = NEW.item_id;
      RETURN NULL;
    END; $$ LANGUAGE plpgsql;""",
    """CREATE TRIGGER annotation_annotation_submitted AFTER INSERT ON annotation_annotation
    FOR EACH ROW EXECUTE FUNCTION rfstudio_annotation_submitted();""",
    """CREATE OR REPLACE FUNCTION rfstudio_refuse_audit_change() RETURNS trigger AS $$
    BEGIN RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP; END;
    $$ LANGUAGE plpgsql;""",
    """CREATE TRIGGER annotation_auditevent_append_only BEFORE UPDATE OR DELETE
    ON annotation_auditevent FOR EACH ROW EXECUTE FUNCTION rfstudio_refuse_audit_change();""",
]
POSTGRES_REVERSE = [
    "DROP TRIGGER IF EXISTS annotation_assignment_sync ON annotation_assignment;",
    "DROP TRIGGER IF EXISTS annotation_annotation_submitted ON annotation_annotation;",
    "DROP TRIGGER IF EXISTS annotation_auditevent_append_only ON annotation_auditevent;",
    "DROP FUNCTION IF EXISTS rfstudio_assignment_sync();",
    "DROP FUNCTION IF EXISTS rfstudio_annotation_submitted();",
    "DROP FUNCTION IF EXISTS rfstudio_refuse_audit_change();",
]


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
    dependencies = [("annotation", "0003_leases_votes_goldstats")]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE, "postgresql": POSTGRES}),
            _run({"sqlite": SQLITE_REVERSE, "postgresql": POSTGRES_REVERSE}),
        )
    ]
