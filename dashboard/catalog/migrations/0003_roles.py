"""The two roles: Viewers (read everything in the catalog app) and Operators (read, plus act on tasks)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

# A constants module that imports no models: safe to use from a migration. A codename it names for a model
# this migration's state does not have yet is simply not found, so later additions do not break history.
from dashboard.catalog.permissions import APP_LABEL, OPERATORS, ROLES, VIEWERS


def create_roles(apps, schema_editor):
    # On a fresh database the permissions are only made after all migrations (post_migrate): make them now.
    app_config = apps.get_app_config("catalog")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(
            *Permission.objects.filter(content_type__app_label=APP_LABEL, codename__in=codenames)
        )


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=[VIEWERS, OPERATORS]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0002_webhook_delivery_sync_budget"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
