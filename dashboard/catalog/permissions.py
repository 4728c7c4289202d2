"""Who may do what: the two roles' permissions in one place, for views, fragments, admin actions and tests.

Viewers (a group made by migration 0003) hold the view permissions; operators also hold `operate_tasks`.
"""

from django.contrib.auth.decorators import permission_required

VIEW_PERMISSIONS = ("catalog.view_catalogitem", "catalog.view_producttask")
OPERATE_PERMISSION = "catalog.operate_tasks"

#: Every page and fragment: a direct request to a fragment URL is checked like its page.
viewer_required = permission_required(VIEW_PERMISSIONS, raise_exception=True)
#: Every action that changes something at Vionlabs or starts background work.
operator_required = permission_required(OPERATE_PERMISSION, raise_exception=True)
