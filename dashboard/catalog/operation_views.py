"""Bulk operations and the webhook receiver: views (filled in by the background-work issue)."""

urlpatterns: list = []
