"""Cart limits and shipping."""

from openfeature import api
from openfeature.evaluation_context import EvaluationContext

flags = api.get_client("checkout")


def max_items(customer):
    return flags.get_integer_value("max-cart-items", 100, EvaluationContext(customer.id))


def shipping_cost(customer, basket):
    ctx = EvaluationContext(customer.id)
    details = flags.get_boolean_details("holiday-free-shipping", False, ctx)
    threshold = details.flag_metadata.get("threshold-usd", 0)
    if details.value and basket.total >= threshold:
        return 0
    return basket.shipping_quote()


def express_available(customer):
    # Kill switch: keep it permanent.
    return flags.get_boolean_value("express-checkout", True, EvaluationContext(customer.id))


def checkout_flow(customer):
    if flags.get_boolean_value("one-page-checkout", False, EvaluationContext(customer.id)):
        return "checkout/one_page.html"
    return "checkout/steps.html"
