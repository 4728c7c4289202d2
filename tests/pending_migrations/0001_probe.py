"""A migration that is never applied: /readyz must see it as pending (tests/test_health.py)."""

from __future__ import annotations

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = []
    operations = []
