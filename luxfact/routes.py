"""The route table: every URL the service answers, in one place."""

from pathlib import Path

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from luxfact.audit import api as audit_api
from luxfact.auth import api as auth_api
from luxfact.billing import api as billing_api
from luxfact.claims import api as claims_api
from luxfact.fhir import api as fhir_api
from luxfact.health import api as health_api
from luxfact.hl7 import api as hl7_api
from luxfact.observability import api as observability_api
from luxfact.patients import api as patients_api
from luxfact.stays import api as stays_api
from luxfact.tariffs import api as tariffs_api
from luxfact.tenancy import api as tenancy_api
from luxfact.web import apidocs
from luxfact.web.routes import desk_routes
from luxfact.webhooks import api as webhooks_api

STATIC = Path(__file__).resolve().parent / "web" / "static"

API = "/api/v1"


def routes() -> list[BaseRoute]:
    return [
        Route("/healthz", health_api.healthz, methods=["GET"]),
        Route("/readyz", health_api.readyz, methods=["GET"]),
        Route(f"{API}/openapi.json", apidocs.openapi_json, methods=["GET"]),
        Route("/api/docs", apidocs.reference, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route(f"{API}/audit-events", audit_api.list_audit_events, methods=["GET"]),
        Route(f"{API}/tenant", tenancy_api.get_tenant, methods=["GET"]),
        Route(f"{API}/api-keys", auth_api.list_api_keys, methods=["GET"]),
        Route(f"{API}/api-keys", auth_api.create_api_key, methods=["POST"]),
        Route(f"{API}/api-keys/{{key_id}}/revoke", auth_api.revoke_api_key, methods=["POST"]),
        Route(f"{API}/users", auth_api.list_users, methods=["GET"]),
        Route(f"{API}/users", auth_api.create_user, methods=["POST"]),
        Route(f"{API}/patients", patients_api.create_patient, methods=["POST"]),
        Route(f"{API}/patients", patients_api.list_patients, methods=["GET"]),
        Route(f"{API}/patients/{{patient_id}}", patients_api.get_patient, methods=["GET"]),
        Route(f"{API}/patients/{{patient_id}}", patients_api.update_patient, methods=["PATCH"]),
        Route(f"{API}/patients/{{patient_id}}/duplicates", patients_api.list_duplicates,
              methods=["GET"]),
        Route(f"{API}/patients/{{patient_id}}/merge", patients_api.merge, methods=["POST"]),
        Route(f"{API}/patients/{{patient_id}}/coverages", patients_api.list_coverages,
              methods=["GET"]),
        Route(f"{API}/patients/{{patient_id}}/coverages", patients_api.add_coverage,
              methods=["POST"]),
        Route(f"{API}/stays", stays_api.create_stay, methods=["POST"]),
        Route(f"{API}/stays", stays_api.list_stays, methods=["GET"]),
        Route(f"{API}/stays/{{stay_id}}", stays_api.get_stay, methods=["GET"]),
        Route(f"{API}/stays/{{stay_id}}", stays_api.update_stay, methods=["PATCH"]),
        Route(f"{API}/stays/{{stay_id}}/movements", stays_api.add_movement, methods=["POST"]),
        Route(f"{API}/stays/{{stay_id}}/acts", stays_api.record_act, methods=["POST"]),
        Route(f"{API}/stays/{{stay_id}}/acts", stays_api.list_acts, methods=["GET"]),
        Route(f"{API}/stays/{{stay_id}}/acts/{{act_id}}", stays_api.update_act,
              methods=["PATCH"]),
        Route(f"{API}/stays/{{stay_id}}/acts/{{act_id}}", stays_api.cancel_act,
              methods=["DELETE"]),
        Route(f"{API}/stays/{{stay_id}}/invoices", billing_api.bill_stay, methods=["POST"]),
        Route(f"{API}/invoices", billing_api.list_invoices, methods=["GET"]),
        Route(f"{API}/invoices/{{invoice_id}}", billing_api.get_invoice, methods=["GET"]),
        Route(f"{API}/invoices/{{invoice_id}}", billing_api.refuse_change,
              methods=["PATCH", "DELETE"]),
        Route(f"{API}/invoices/{{invoice_id}}/pdf", billing_api.invoice_pdf, methods=["GET"]),
        Route(f"{API}/invoices/{{invoice_id}}/fhir", billing_api.invoice_fhir, methods=["GET"]),
        Route(f"{API}/invoices/{{invoice_id}}/credit-notes", billing_api.credit_invoice,
              methods=["POST"]),
        Route(f"{API}/invoices/{{invoice_id}}/payments", billing_api.record_payment,
              methods=["POST"]),
        Route(f"{API}/invoices/{{invoice_id}}/payments", billing_api.list_payments,
              methods=["GET"]),
        Route(f"{API}/invoices/{{invoice_id}}/reminders", billing_api.send_reminder,
              methods=["POST"]),
        Route(f"{API}/invoices/{{invoice_id}}/reminders/{{number}}",
              billing_api.reminder_pdf, methods=["GET"]),
        Route(f"{API}/claim-batches", claims_api.build_batch, methods=["POST"]),
        Route(f"{API}/claim-batches", claims_api.list_batches, methods=["GET"]),
        Route(f"{API}/claim-batches/{{batch_id}}", claims_api.get_batch, methods=["GET"]),
        Route(f"{API}/claim-batches/{{batch_id}}/errors", claims_api.batch_errors,
              methods=["GET"]),
        Route(f"{API}/claim-batches/{{batch_id}}/validate", claims_api.validate_batch,
              methods=["POST"]),
        Route(f"{API}/claim-batches/{{batch_id}}/freeze", claims_api.freeze_batch,
              methods=["POST"]),
        Route(f"{API}/claim-batches/{{batch_id}}/sent", claims_api.mark_sent,
              methods=["POST"]),
        Route(f"{API}/claim-batches/{{batch_id}}/file", claims_api.batch_file,
              methods=["GET"]),
        Route(f"{API}/claim-batches/{{batch_id}}/return", claims_api.import_return,
              methods=["POST"]),
        Route(f"{API}/claim-batches/{{batch_id}}/reconciliation", claims_api.reconcile,
              methods=["GET"]),
        Route(f"{API}/claim-batches/{{batch_id}}/reconciliation.csv", claims_api.reconcile_csv,
              methods=["GET"]),
        Route(f"{API}/claim-lines", claims_api.claim_lines, methods=["GET"]),
        Route(f"{API}/claim-lines/{{invoice_id}}/{{line}}/write-off", claims_api.write_off,
              methods=["POST"]),
        Route(f"{API}/tariffs/acts", tariffs_api.search_acts, methods=["GET"]),
        Route(f"{API}/tariffs/acts/{{code}}", tariffs_api.get_act, methods=["GET"]),
        Route(f"{API}/hl7/v2", hl7_api.receive_message, methods=["POST"]),
        Route(f"{API}/hl7/messages", hl7_api.list_messages, methods=["GET"]),
        Route(f"{API}/hl7/messages/{{message_id}}/replay", hl7_api.replay_message,
              methods=["POST"]),
        Route(f"{API}/webhooks", webhooks_api.list_webhooks, methods=["GET"]),
        Route(f"{API}/webhooks", webhooks_api.create_webhook, methods=["POST"]),
        Route(f"{API}/webhooks/{{webhook_id}}", webhooks_api.disable_webhook,
              methods=["DELETE"]),
        Route(f"{API}/webhooks/{{webhook_id}}", webhooks_api.update_webhook,
              methods=["PATCH"]),
        Route(f"{API}/webhooks/{{webhook_id}}/disable", webhooks_api.disable_webhook,
              methods=["POST"]),
        Route(f"{API}/webhooks/{{webhook_id}}/rotate-secret",
              webhooks_api.rotate_webhook_secret, methods=["POST"]),
        Route(f"{API}/webhooks/{{webhook_id}}/deliveries", webhooks_api.list_deliveries,
              methods=["GET"]),
        Route("/metrics", observability_api.metrics, methods=["GET"]),
        Route(f"{API}/fhir/Patient/{{patient_id}}", fhir_api.read_fhir_patient,
              methods=["GET"]),
        Route(f"{API}/fhir/Encounter/{{stay_id}}", fhir_api.read_fhir_encounter,
              methods=["GET"]),
        Route(f"{API}/fhir/Claim/{{invoice_id}}", fhir_api.read_fhir_claim, methods=["GET"]),
        Route(f"{API}/fhir/ClaimResponse/{{invoice_id}}", fhir_api.read_fhir_claim_response,
              methods=["GET"]),
        Route(f"{API}/fhir/Invoice/{{invoice_id}}", fhir_api.read_fhir_invoice,
              methods=["GET"]),
        *desk_routes(),
    ]
