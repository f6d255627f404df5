"""On PostgreSQL, a saved ConfigVersion's content can never change and it cannot be deleted."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION flagdash_version_immutable() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'configuration versions are immutable: DELETE refused'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.document IS DISTINCT FROM OLD.document
       OR NEW.sha256 IS DISTINCT FROM OLD.sha256
       OR NEW.number IS DISTINCT FROM OLD.number
       OR NEW.environment_id IS DISTINCT FROM OLD.environment_id
       OR NEW.message IS DISTINCT FROM OLD.message
       OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        RAISE EXCEPTION 'configuration versions are immutable: UPDATE refused'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER flags_configversion_immutable
    BEFORE UPDATE OR DELETE ON flags_configversion
    FOR EACH ROW EXECUTE FUNCTION flagdash_version_immutable();
"""

DROP = """
DROP TRIGGER IF EXISTS flags_configversion_immutable ON flags_configversion;
DROP FUNCTION IF EXISTS flagdash_version_immutable();
"""


def _run(schema_editor, sql):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(sql)  # no parameters: '%' in the SQL is literal


def forwards(apps, schema_editor):
    _run(schema_editor, CREATE)


def backwards(apps, schema_editor):
    _run(schema_editor, DROP)


class Migration(migrations.Migration):
    dependencies = [("flags", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
