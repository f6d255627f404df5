"""On PostgreSQL, a saved ConfigVersion's content can never change and it cannot be deleted."""

from django.db import migrations

from flagdash.flags.migrations import _triggers

CREATE_TRIGGER = """
CREATE TRIGGER flags_configversion_immutable
    BEFORE UPDATE OR DELETE ON flags_configversion
    FOR EACH ROW EXECUTE FUNCTION flagdash_version_immutable();
"""

DROP = """
DROP TRIGGER IF EXISTS flags_configversion_immutable ON flags_configversion;
DROP FUNCTION IF EXISTS flagdash_version_immutable();
"""


def forwards(apps, schema_editor):
    _triggers.run(schema_editor, _triggers.VERSION_IMMUTABLE + CREATE_TRIGGER)


def backwards(apps, schema_editor):
    _triggers.run(schema_editor, DROP)


class Migration(migrations.Migration):
    dependencies = [("flags", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
