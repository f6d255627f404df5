"""AWS AppConfig's predefined strategies, and flagdash's own for restoring a version."""

from django.db import migrations

from flagdash.deployments.predefined import ensure_predefined


def create(apps, schema_editor):
    ensure_predefined(apps.get_model("deployments", "DeploymentStrategy"))


class Migration(migrations.Migration):
    dependencies = [("deployments", "0001_initial")]
    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
