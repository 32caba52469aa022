"""Payments: credit bought through Stripe Checkout, refunds, auto-top-up, and Sizzle Lab
(the monthly plan).

`Payments` (checkout.py) is the entry point; it owns `refunds` (refunds.py), `top_ups`
(top_ups.py) and `lab` (lab.py). Every credit purchase lands through `credit_purchase`
(common.py), keyed by the purchase.
"""

from sizzle.services.payments.checkout import Payments
from sizzle.services.payments.common import (
    BONUS_ACCOUNT,
    STRIPE_ACCOUNT,
    BadSignature,
    Checkout,
    PaymentsNotConfigured,
    credit_purchase,
)
from sizzle.services.payments.lab import Lab
from sizzle.services.payments.refunds import Refunds, refundable_micros
from sizzle.services.payments.top_ups import MAX_TOP_UP_FAILURES, TopUps

__all__ = [
    "BONUS_ACCOUNT",
    "MAX_TOP_UP_FAILURES",
    "STRIPE_ACCOUNT",
    "BadSignature",
    "Checkout",
    "Lab",
    "Payments",
    "PaymentsNotConfigured",
    "Refunds",
    "TopUps",
    "credit_purchase",
    "refundable_micros",
]
