"""The two roles: Viewers (read everything in the catalog app) and Operators (read, plus act on tasks)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW_MODELS = [
    "catalogitem",
    "producttask",
    "taskevent",
    "productsetting",
    "operation",
    "operationitem",
    "upstreamhealth",
]


def create_roles(apps, schema_editor):
    # On a fresh database the permissions are only made after all migrations (post_migrate): make them now.
    app_config = apps.get_app_config("catalog")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    view = list(
        Permission.objects.filter(
            content_type__app_label="catalog", codename__in=[f"view_{m}" for m in VIEW_MODELS]
        )
    )
    operate = Permission.objects.get(content_type__app_label="catalog", codename="operate_tasks")
    viewers, _ = Group.objects.get_or_create(name="Viewers")
    viewers.permissions.add(*view)
    operators, _ = Group.objects.get_or_create(name="Operators")
    operators.permissions.add(*view, operate)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["Viewers", "Operators"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0002_webhook_delivery_sync_budget"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
