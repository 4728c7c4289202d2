"""Who may do what: the two roles and their permissions in one place, for views, fragments, admin actions,
the roles migration, `seed_demo` and tests.

Viewers hold the view permissions; Operators also hold `operate_tasks`. Migration 0003 imports this module,
so it must never import models (nor anything that does).
"""

from __future__ import annotations

from django.contrib.auth.decorators import permission_required

APP_LABEL = "catalog"
OPERATE_CODENAME = "operate_tasks"
#: The models both roles may view (their `view_<model>` permissions).
ROLE_VIEW_MODELS = (
    "catalogitem",
    "producttask",
    "taskevent",
    "productsetting",
    "operation",
    "operationitem",
    "upstreamhealth",
)
VIEWERS = "Viewers"
OPERATORS = "Operators"
#: Group name -> the codenames (in the catalog app) its members hold.
ROLES: dict[str, tuple[str, ...]] = {
    VIEWERS: tuple(f"view_{model}" for model in ROLE_VIEW_MODELS),
    OPERATORS: (*(f"view_{model}" for model in ROLE_VIEW_MODELS), OPERATE_CODENAME),
}

#: What a view checks: enough to see the catalog and its tasks.
VIEW_PERMISSIONS = (f"{APP_LABEL}.view_catalogitem", f"{APP_LABEL}.view_producttask")
OPERATE_PERMISSION = f"{APP_LABEL}.{OPERATE_CODENAME}"

#: Every page and fragment: a direct request to a fragment URL is checked like its page.
viewer_required = permission_required(VIEW_PERMISSIONS, raise_exception=True)
#: Every action that changes something at Vionlabs or starts background work.
operator_required = permission_required(OPERATE_PERMISSION, raise_exception=True)
