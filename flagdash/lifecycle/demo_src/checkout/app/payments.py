"""Payment options offered at checkout."""

from decimal import Decimal

from openfeature import api
from openfeature.evaluation_context import EvaluationContext

flags = api.get_client("checkout")


def payment_options(customer, basket):
    ctx = EvaluationContext(customer.id, {"country": customer.country})
    options = ["card", "paypal"]
    if flags.get_boolean_value("allow-bitcoin-at-checkout", False, ctx):
        options.append("bitcoin")
    return options


def bitcoin_discount(basket, details):
    # Attributes of allow-bitcoin-at-checkout arrive as flag metadata.
    percentage = Decimal(str(details.flag_metadata.get("bitcoin-discount-percentage", 0)))
    return basket.total * percentage / 100


def card_form(customer):
    ctx = EvaluationContext(customer.id)
    if flags.get_boolean_value("new-payment-form", False, ctx):
        return "payments/card_form_v2.html"
    return "payments/card_form.html"


def risk_score(payment):
    ctx = EvaluationContext(payment.customer_id, {"amount": float(payment.amount)})
    if flags.get_boolean_value("fraud-check-v2", False, ctx):
        return risk_service_v2.score(payment)  # noqa: F821
    return legacy_risk.score(payment)  # noqa: F821
