from django.urls import path

from . import views
from .operation_views import urlpatterns as operation_urlpatterns

app_name = "catalog"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("items/", views.item_list, name="item-list"),
    path("items/<int:pk>/", views.item_detail, name="item-detail"),
    path("items/<int:pk>/children/", views.item_children, name="item-children"),
    path("items/<int:pk>/tasks/", views.task_create, name="task-create"),
    path("items/<int:pk>/refresh/", views.item_refresh, name="item-refresh"),
    path("tasks/", views.task_list, name="task-list"),
    path("tasks/<int:pk>/refresh/", views.task_refresh, name="task-refresh"),
    path("tasks/<int:pk>/deactivate/", views.task_deactivate, name="task-deactivate"),
    path("tasks/<int:pk>/retry/", views.task_retry, name="task-retry"),
    path("poll/", views.poll, name="poll"),
    *operation_urlpatterns,
]
