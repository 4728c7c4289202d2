"""The Vionlabs webhook receiver: checks the shared secret, notes the delivery, enqueues a refresh."""

from __future__ import annotations

import hmac
import json
import logging

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from ..forms import WebhookPayloadForm
from ..jobs import enqueue_on_commit, refresh_item
from ..models import CatalogItem, EventSource, WebhookDelivery
from .common import HtmxHttpRequest

logger = logging.getLogger(__name__)

WEBHOOK_MAX_BYTES = 64 * 1024


def _bad_payload(message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=400)


def _payload(body: bytes) -> dict[str, str]:
    """The delivery's fields, validated; raises ValidationError with a message for the sender."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise ValidationError("The body is not valid JSON.") from error
    if not isinstance(data, dict):
        raise ValidationError("The body must be a JSON object.")
    form = WebhookPayloadForm(data=data)
    if not form.is_valid():
        raise ValidationError(form.first_error())
    return form.cleaned_data


@csrf_exempt
@login_not_required
@require_POST
def webhook_vionlabs(request: HtmxHttpRequest) -> HttpResponse:
    """Vionlabs says a task finished: check the shared secret, note the delivery, enqueue a refresh (the
    payload carries no outcome, so the status is re-read). Answers at once; makes no HTTP call."""
    secret = settings.VIONLABS_WEBHOOK_SECRET
    if not secret:
        # Not configured: behave as if there were no such endpoint.
        return HttpResponse("Not found.", status=404, content_type="text/plain")
    given = request.headers.get("x-api-key", "")
    if not hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8")):
        logger.warning(
            "Webhook refused: wrong or missing x-api-key (from %s)", request.META.get("REMOTE_ADDR")
        )
        return JsonResponse({"error": "Wrong or missing x-api-key."}, status=403)
    if len(request.body) > WEBHOOK_MAX_BYTES:
        return _bad_payload("The body is too large.")
    try:
        payload = _payload(request.body)
    except ValidationError as error:
        return _bad_payload(error.messages[0])
    item = CatalogItem.objects.filter(inventory_id=payload["inventory_id"]).first()
    key = {
        "inventory_id": payload["inventory_id"],
        "product": payload["product"],
        "version": payload["version"],
        "sent_at": payload["timestamp"],
    }
    try:
        with transaction.atomic():
            delivery = WebhookDelivery.objects.create(
                **key, kind=payload["type"], item=item, refresh_enqueued=item is not None
            )
            if item is not None:
                enqueue_on_commit(refresh_item, item.pk, EventSource.WEBHOOK.value)
    except IntegrityError:
        WebhookDelivery.objects.filter(**key).update(duplicates=F("duplicates") + 1)
        logger.info(
            "Webhook duplicate for %r %s %s at %s: ignored", key["inventory_id"], key["product"],
            key["version"], key["sent_at"],
        )  # fmt: skip
        return JsonResponse({"status": "duplicate"}, status=202)
    if item is None:
        logger.warning(
            "Webhook for unknown item %r (%s %s): nothing to refresh", key["inventory_id"], key["product"],
            key["version"],
        )  # fmt: skip
        return JsonResponse({"status": "unknown item"}, status=202)
    logger.info("Webhook for %r %s %s: refresh enqueued", item.inventory_id, key["product"], key["version"])
    return JsonResponse({"status": "refresh enqueued", "delivery": delivery.pk}, status=202)
