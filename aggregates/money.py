"""Money: an amount in a currency (ISO 4217), never finer than the currency's minor unit.

Amounts are `Decimal`s checked here once, before they become events: an event is stored for
good, so a price of "1.005" EUR or one of a million digits must never reach the log. Sums are
computed in `ARITHMETIC`, which never raises, so a fold stays total even over a log written
before these checks existed.
"""

from __future__ import annotations

import functools
from decimal import MAX_EMAX, MIN_EMIN, ROUND_HALF_EVEN, Context, Decimal, localcontext

from aggregates.errors import InvalidValue

DEFAULT_CURRENCY = "EUR"
MAX_INTEGER_DIGITS = 12
AMOUNT_BOUND = Decimal(10) ** MAX_INTEGER_DIGITS
"""Every amount is below this: at most twelve digits before the point, in any currency (about
40 million US dollars in Vietnamese dong, the currency with the smallest unit in common use)."""

_ZERO_DIGITS = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF"
_THREE_DIGITS = "BHD IQD JOD KWD LYD OMR TND"
_TWO_DIGITS = (
    "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD"
    " CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP"
    " GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD"
    " LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB"
    " PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC"
    " SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST XCD XCG YER ZAR ZMW ZWG"
)
MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(_TWO_DIGITS.split(), 2),
    **dict.fromkeys(_ZERO_DIGITS.split(), 0),
    **dict.fromkeys(_THREE_DIGITS.split(), 3),
}
"""The currencies a price may be in: ISO 4217's circulating currencies and the digits of each
one's minor unit. Funds, precious metals and test codes (XAU, CLF, XTS, ...) are not prices."""

ARITHMETIC = Context(
    prec=40, rounding=ROUND_HALF_EVEN, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[], flags=[]
)
"""Room for any total of checked amounts (12 + 3 digits, times quantities and lines); with no
traps, an absurd amount from an old log yields Infinity or NaN instead of an exception."""

_legacy_currency = DEFAULT_CURRENCY


def use_legacy_currency(code: str) -> None:
    """Name the currency of carts recorded before carts had one (the configured default).

    Only the deployment knows which currency its old carts were priced in, and an upcaster
    (eventsourcing's `upcast_vN_vN+1(state)`) takes nothing but the event's state, so the
    process holds it; `continuity.runtime` sets it from the settings at start."""
    global _legacy_currency
    _legacy_currency = check_currency(code)


def legacy_currency() -> str:
    return _legacy_currency


def check_currency(code: str) -> str:
    if code not in MINOR_UNITS:
        raise InvalidValue(f"{code!r} is not a currency this API accepts", field="currency")
    return code


def minor_unit(currency: str) -> Decimal:
    """The smallest amount of `currency`: 0.01 for EUR, 1 for JPY, 0.001 for KWD."""
    return _UNITS.get(currency, _CENT)


_UNITS = {code: Decimal(1).scaleb(-digits) for code, digits in MINOR_UNITS.items()}
_CENT = Decimal("0.01")


def check_amount(amount: Decimal, currency: str, field: str) -> Decimal:
    """`amount` at the currency's minor unit ("12.5" EUR is 12.50), or InvalidValue when it is
    negative, too large, or finer than the minor unit ("1.005" EUR)."""
    if not amount.is_finite() or amount < 0:
        raise InvalidValue(f"{field} must be zero or more", field=field)
    if amount >= AMOUNT_BOUND:
        raise InvalidValue(f"{field} must be below {AMOUNT_BOUND}", field=field)
    with localcontext(ARITHMETIC):
        exact = amount.quantize(minor_unit(currency))
    if exact != amount:
        digits = MINOR_UNITS[currency]
        raise InvalidValue(
            f"{field} has more than {digits} decimal places, the minor unit of {currency}",
            field=field,
        )
    return exact


# The folds call these for every event they fold: they use ARITHMETIC's own methods, which
# compute exactly as `with localcontext(ARITHMETIC)` would, without entering a context.


def times(amount: Decimal, quantity: int, currency: str) -> Decimal:
    """`amount` times `quantity`, rounded to the currency's minor unit."""
    return rounded(ARITHMETIC.multiply(amount, quantity), currency)


def total(amounts: list[Decimal], currency: str) -> Decimal:
    """The sum of `amounts`, rounded to the currency's minor unit."""
    return rounded(functools.reduce(ARITHMETIC.add, amounts, _ZERO), currency)


def rounded(amount: Decimal, currency: str) -> Decimal:
    return ARITHMETIC.quantize(amount, minor_unit(currency)) if amount.is_finite() else amount


_ZERO = Decimal(0)
