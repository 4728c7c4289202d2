from django.shortcuts import render
from django.views.decorators.http import require_GET


@require_GET
def overview(request):
    return render(request, "catalog/overview.html", {})
