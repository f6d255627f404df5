"""Search results for the storefront."""

from openfeature import api
from openfeature.evaluation_context import EvaluationContext

flags = api.get_client("storefront")


def rank(query, customer):
    model = flags.get_string_value("search-ranking-model", "bm25", EvaluationContext(customer.id))
    return RANKERS[model].rank(query)  # noqa: F821


def discount(customer):
    return flags.get_float_value("discount-rate", 0.0, EvaluationContext(customer.id))
