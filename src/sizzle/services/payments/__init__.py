"""Payments: credit bought through Stripe Checkout, refunds, auto-top-up.

`Payments` (checkout.py) is the entry point; it owns `refunds` (refunds.py) and `top_ups`
(top_ups.py). Every flow credits through `credit_purchase` (common.py), keyed by the purchase.
"""

from sizzle.services.payments.checkout import Checkout, Payments
from sizzle.services.payments.common import (
    BONUS_ACCOUNT,
    STRIPE_ACCOUNT,
    BadSignature,
    PaymentsNotConfigured,
    credit_purchase,
)
from sizzle.services.payments.refunds import Refunds, refundable_micros
from sizzle.services.payments.top_ups import MAX_TOP_UP_FAILURES, TopUps

__all__ = [
    "BONUS_ACCOUNT",
    "MAX_TOP_UP_FAILURES",
    "STRIPE_ACCOUNT",
    "BadSignature",
    "Checkout",
    "Payments",
    "PaymentsNotConfigured",
    "Refunds",
    "TopUps",
    "credit_purchase",
    "refundable_micros",
]
