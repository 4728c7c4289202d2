from django.urls import path

from . import views
from .operation_views import urlpatterns as operation_urlpatterns

app_name = "catalog"

urlpatterns = [
    path("", views.overview, name="overview"),
    *operation_urlpatterns,
]
