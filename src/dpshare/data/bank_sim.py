"""Simulated cross-bank transaction records: the embedded default dataset.

This stands in for the "simulated cross-bank transaction records" of Deng (2026, Sec. 4.1,
Table 2): 100,000+ records, continuous, categorical and time-series features, and a minority
"high-risk" label. One record is one transaction; every account contributes many transactions.

The generative model, in order (every distribution, parameter and default is listed, with the
reason it is realistic, in ``docs/bank_sim.md``):

1. **Banks** have unequal (Zipf-like) market shares.
2. **Accounts** have a type (personal, business, student, corporate), a home bank, an opening
   date (most before the window, some inside it) and an overdispersed activity rate
   (gamma-distributed multiplier of a type-specific daily rate). The number of accounts follows
   from ``n_transactions`` and the mean activity; genuine transactions are spread over accounts by
   a multinomial draw (a gamma-Poisson model conditioned on its total), so the table has exactly
   ``n_transactions`` rows without trimming.
3. **Timestamps**: a uniform day inside the account's active window (businesses avoid weekends),
   an hour from a type-specific diurnal profile, and short follow-up transactions (sessions), so
   inter-arrival times are bursty.
4. **Counterparties**: each account has a few regular counterparties (Zipf weights) and an
   occasional pool; each counterparty has a fixed merchant category and bank (mostly the home
   bank). The channel depends on the merchant category.
5. **Amounts**: log-normal with an account-specific location (type scale, merchant offset) and
   rare spikes.
6. **Compromise episodes** (hidden): a few accounts are taken over for a burst of transactions at
   night-heavy hours, with larger amounts, new (often cross-bank) counterparties and risky merchant
   categories and channels; the episode drains the balance.
7. **Label**: ``is_high_risk ~ Bernoulli(sigmoid(b0 + score))``, the score combining the amount
   relative to the account's own history, the hour, cross-bank velocity, new counterparties,
   merchant category, channel, account age, the hidden episode and unobserved noise; ``b0`` is
   solved by bisection so the expected positive rate is ``high_risk_rate``. Label noise then turns
   a share ``label_noise`` of the positives into negatives and the same number of negatives into
   positives, which leaves the positive rate unchanged.

Everything is vectorized and driven by one ``np.random.default_rng(seed)``.
"""

from __future__ import annotations

import datetime
import math
import string
from numbers import Integral, Real
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dpshare.errors import UserInputError

if TYPE_CHECKING:
    from dpshare.data.transformer import PublicDomain

__all__ = [
    "ACCOUNT_TYPES",
    "CHANNELS",
    "COLUMNS",
    "GROUP_COLUMN",
    "ID_COLUMN",
    "INSTITUTION_COLUMN",
    "MERCHANT_CATEGORIES",
    "TARGET_COLUMN",
    "TIME_COLUMN",
    "bank_names",
    "public_domain",
    "simulate_bank_transactions",
]

ID_COLUMN = "transaction_id"
GROUP_COLUMN = "account_id"  # sequence key
TIME_COLUMN = "timestamp"
TARGET_COLUMN = "is_high_risk"
INSTITUTION_COLUMN = "bank"

COLUMNS: tuple[str, ...] = (
    ID_COLUMN,
    GROUP_COLUMN,
    TIME_COLUMN,
    INSTITUTION_COLUMN,
    "account_type",
    "account_age_days",
    "amount",
    "channel",
    "merchant_category",
    "counterparty_bank",
    "is_cross_bank",
    "balance_before",
    "hours_since_prev",
    "txn_count_24h",
    "cross_bank_count_24h",
    "new_counterparty",
    TARGET_COLUMN,
)

# ------------------------------------------------------------------------------------ accounts

ACCOUNT_TYPES: tuple[str, ...] = ("personal", "business", "student", "corporate")
TYPE_SHARES = np.array([0.70, 0.15, 0.10, 0.05])
# Mean transactions per active day, by type; the population mean is ~0.32/day (~58 in 180 days).
DAILY_RATE = np.array([0.22, 0.60, 0.18, 1.20])
# Gamma shape of the per-account activity multiplier (mean 1, CV = 1/sqrt(shape) ~ 1.1).
ACTIVITY_SHAPE = 0.8
# Share of accounts opened inside the window (uniformly in its first 80 %).
NEW_ACCOUNT_SHARE = 0.12
# Mean age (days) on the window start of accounts opened before it: 30 + Exponential(mean).
MEAN_AGE_DAYS = np.array([2500.0, 1800.0, 500.0, 3500.0])
MAX_AGE_DAYS = 40 * 365
# Typical amount (currency units) per type, and the spread of account locations around it.
TYPICAL_AMOUNT = np.array([45.0, 220.0, 20.0, 1500.0])
ACCOUNT_LOCATION_SD = 0.5
# Within-account log-amount spread, by type.
AMOUNT_SD = np.array([0.8, 0.9, 0.7, 1.0])
# Rare genuine spikes: probability, and log multiplier ~ Uniform(low, high) (x2.7 .. x12).
SPIKE_PROB = 0.008
SPIKE_LOG_RANGE = (1.0, 2.5)
# Balance level = typical amount * exp(N(mean, sd)) (~33x the typical amount), monthly sawtooth.
BALANCE_LOG_MEAN = 3.5
BALANCE_LOG_SD = 0.7
BALANCE_NOISE_SD = 0.10
# Weekend avoidance of business and corporate accounts (probability a weekend day is moved).
WEEKEND_SHIFT_PROB = np.array([0.0, 0.7, 0.0, 0.7])
# Sessions: probability a transaction follows the previous one closely, and the mean gap (hours).
FOLLOW_UP_PROB = 0.15
FOLLOW_UP_MEAN_HOURS = 0.4

# Hour-of-day weights (0..23) by account type, and for compromise episodes.
HOUR_PROFILES = np.array(
    [
        # personal: lunch and evening peaks, almost nothing at night
        [0.4, 0.25, 0.15, 0.1, 0.1, 0.3, 1.2, 2.5, 3.5, 4, 4.5, 5.5,
         7, 6.5, 5, 5, 5.5, 6.5, 7.5, 7, 6, 4.5, 3, 1.5],
        # business: office hours
        [0.1, 0.05, 0.05, 0.05, 0.05, 0.2, 1, 3, 6, 9, 10, 10,
         8, 9, 10, 9.5, 8, 5, 3, 2, 1.2, 0.8, 0.5, 0.3],
        # student: late, some night activity
        [1.5, 0.9, 0.5, 0.25, 0.15, 0.15, 0.4, 1.2, 2.5, 3, 3.5, 4.5,
         6, 5.5, 4.5, 4.5, 5, 6, 7, 7, 7, 6.5, 5, 3.2],
        # corporate: strict office hours
        [0.05, 0.03, 0.03, 0.03, 0.03, 0.1, 0.8, 3, 8, 11, 12, 11,
         8, 10, 11, 10, 8, 4, 2, 1, 0.5, 0.3, 0.2, 0.1],
    ]
)  # fmt: skip
FRAUD_HOUR_PROFILE = np.array([6, 7, 7, 6, 5, 3.5] + [2.5] * 18)
UNUSUAL_HOURS = 6  # hours 0..5 count as unusual in the label model

# ---------------------------------------------------------------------------- counterparties

MERCHANT_CATEGORIES: tuple[str, ...] = (
    "groceries",
    "restaurants",
    "fuel",
    "utilities",
    "travel",
    "electronics",
    "cash_withdrawal",
    "p2p_transfer",
    "gambling",
    "crypto_exchange",
)
# Category mix of an account's counterparties, by type (rows sum to 1).
CATEGORY_MIX = np.array(
    [
        [0.26, 0.16, 0.10, 0.08, 0.04, 0.04, 0.12, 0.14, 0.03, 0.03],  # personal
        [0.10, 0.12, 0.14, 0.16, 0.10, 0.10, 0.08, 0.18, 0.01, 0.01],  # business
        [0.22, 0.24, 0.04, 0.05, 0.04, 0.08, 0.10, 0.17, 0.03, 0.03],  # student
        [0.04, 0.08, 0.12, 0.20, 0.18, 0.12, 0.02, 0.22, 0.00, 0.02],  # corporate
    ]
)
# Category mix of counterparties used during compromise episodes.
FRAUD_CATEGORY_MIX = np.array([0.0, 0.0, 0.0, 0.0, 0.08, 0.15, 0.10, 0.37, 0.10, 0.20])
# Log-amount offset of each category relative to the account's location.
CATEGORY_LOG_OFFSET = np.array([0.0, -0.3, 0.1, 0.6, 1.5, 1.2, 0.5, 0.4, 0.2, 0.9])

CHANNELS: tuple[str, ...] = ("branch", "atm", "online", "mobile", "pos")
# P(channel | merchant category), rows in MERCHANT_CATEGORIES order.
CHANNEL_GIVEN_CATEGORY = np.array(
    [
        [0.01, 0.00, 0.08, 0.16, 0.75],  # groceries
        [0.00, 0.00, 0.10, 0.20, 0.70],  # restaurants
        [0.00, 0.00, 0.02, 0.08, 0.90],  # fuel
        [0.10, 0.00, 0.55, 0.30, 0.05],  # utilities
        [0.05, 0.00, 0.60, 0.25, 0.10],  # travel
        [0.00, 0.00, 0.45, 0.20, 0.35],  # electronics
        [0.18, 0.82, 0.00, 0.00, 0.00],  # cash_withdrawal
        [0.06, 0.00, 0.34, 0.60, 0.00],  # p2p_transfer
        [0.00, 0.00, 0.55, 0.40, 0.05],  # gambling
        [0.00, 0.00, 0.55, 0.45, 0.00],  # crypto_exchange
    ]
)
# During an episode: card-not-present and remote channels; cash goes through ATMs (skimmed card).
FRAUD_CHANNEL_GIVEN_CATEGORY = CHANNEL_GIVEN_CATEGORY.copy()
FRAUD_CHANNEL_GIVEN_CATEGORY[:, 2] += FRAUD_CHANNEL_GIVEN_CATEGORY[:, 4]  # pos -> online
FRAUD_CHANNEL_GIVEN_CATEGORY[:, 4] = 0.0
FRAUD_CHANNEL_GIVEN_CATEGORY[:, 2] += FRAUD_CHANNEL_GIVEN_CATEGORY[:, 0]  # branch -> online
FRAUD_CHANNEL_GIVEN_CATEGORY[:, 0] = 0.0
FRAUD_CHANNEL_GIVEN_CATEGORY[6] = [0.0, 1.0, 0.0, 0.0, 0.0]

# Counterparty slots of one account: regular | occasional pool | mules | one-off (fraud) payees.
N_REGULAR_SLOTS = 12
N_OCCASIONAL_SLOTS = 52
N_MULE_SLOTS = 4
N_ONE_OFF_SLOTS = 60
OCCASIONAL_START = N_REGULAR_SLOTS
MULE_START = OCCASIONAL_START + N_OCCASIONAL_SLOTS
ONE_OFF_START = MULE_START + N_MULE_SLOTS
N_SLOTS = ONE_OFF_START + N_ONE_OFF_SLOTS
# Number of regular counterparties: 3 + Binomial(9, 0.4) (mean ~6.6); Zipf exponent of their use.
REGULAR_MIN, REGULAR_EXTRA_N, REGULAR_EXTRA_P = 3, 9, 0.4
REGULAR_ZIPF = 1.1
# Probability a genuine transaction goes to the occasional pool, by type.
OCCASIONAL_PROB = np.array([0.12, 0.15, 0.18, 0.10])
# Probability a counterparty banks at the account's home bank (genuine / fraud payees).
SAME_BANK_PROB = 0.72
FRAUD_SAME_BANK_PROB = 0.30
# Zipf exponent of the bank market shares.
BANK_SHARE_ZIPF = 0.8

# ----------------------------------------------------------------------- compromise episodes

# Share of all transactions that are fraudulent episode transactions, per unit of high_risk_rate.
FRAUD_SHARE_PER_RATE = 0.4
# Fraud transactions per episode: 3 + Poisson(7); gaps ~ Exponential(mean hours).
EPISODE_MIN_TXNS, EPISODE_EXTRA_MEAN = 3, 7.0
EPISODE_GAP_MEAN_HOURS = 1.5
# Fraud log-amount uplift relative to the account's location ~ N(mean, sd).
FRAUD_LOG_UPLIFT = (1.3, 0.6)
# Probability a fraud payment goes to one of the account's mule accounts (else a one-off payee);
# mules per account: 1 + Binomial(N_MULE_SLOTS - 1, MULE_EXTRA_P).
MULE_PROB = 0.55
MULE_EXTRA_P = 0.3
# Days after an episode's last fraudulent transaction until the drained money is reimbursed.
REIMBURSE_DAYS = 3

# ------------------------------------------------------------------------------ label model

# Weights of the risk score (see docs/bank_sim.md for the meaning of each term).
W_AMOUNT_RATIO = 1.6  # per unit log-amount above the account's running mean, clipped to [0, 4]
W_AMOUNT_OVER_BALANCE = 1.0  # amount exceeds the balance before the transaction
W_UNUSUAL_HOUR = 2.0
W_CROSS_BANK_VELOCITY = 1.2  # per log1p(cross-bank transactions in the preceding 24 h)
W_CROSS_BANK = 0.6
W_NEW_COUNTERPARTY = 1.6
W_YOUNG_ACCOUNT = 1.0  # account younger than YOUNG_ACCOUNT_DAYS
YOUNG_ACCOUNT_DAYS = 60
W_CATEGORY = np.array([0.0, 0.0, 0.0, 0.0, 0.4, 0.8, 0.6, 0.6, 2.0, 2.4])
W_CHANNEL = np.array([0.0, 0.4, 0.8, 0.3, 0.0])
W_EPISODE = 5.0  # hidden: the transaction falls inside a compromise episode
ACCOUNT_EFFECT_SD = 1.2  # hidden account-level risk (e.g. an unobserved customer risk rating)
SCORE_NOISE_SD = 1.6  # hidden transaction-level noise
HISTORY_PRIOR_WEIGHT = 3.0  # pseudo-transactions at the type's typical amount in the running mean

SECONDS_PER_HOUR = 3600
SECONDS_PER_DAY = 86_400

# ------------------------------------------------------------- public domain (DP fitting)

# Documented caps of the unbounded columns (docs/bank_sim.md, "Public domain for DP fitting").
# Amounts and balances are log-normal: the caps sit far in the tail the constants above imply
# (the largest segment is corporate, typical amount 1,500), so that clipping touches < 0.1 % of
# the rows at the defaults while the range (which scales the DP noise) stays finite.
DOMAIN_AMOUNT_CAP = 100_000.0
DOMAIN_BALANCE_CAP = 1_000_000.0
# Transactions of one account in 24 h: the simulator has no hard cap (the maximum at the
# defaults is ~20); 50 leaves a wide margin.
DOMAIN_COUNT_24H_CAP = 50


def bank_names(n_banks: int) -> list[str]:
    """``bank_A``, ``bank_B``, ... (``n_banks`` of them)."""
    return [f"bank_{letter}" for letter in string.ascii_uppercase[:n_banks]]


def simulate_bank_transactions(
    *,
    n_transactions: int = 120_000,
    n_banks: int = 5,
    high_risk_rate: float = 0.03,
    label_noise: float = 0.02,
    days: int = 180,
    start: str = "2025-01-01",
    seed: int = 0,
) -> pd.DataFrame:
    """Simulate ``n_transactions`` cross-bank transactions (one row each).

    Args:
        n_transactions: number of rows, at least 100.
        n_banks: number of institutions (2..26), named ``bank_A``, ``bank_B``, ...
        high_risk_rate: expected share of ``is_high_risk == 1``, in (0, 0.5).
        label_noise: share of the truly high-risk transactions recorded as low-risk; the same
            number of low-risk transactions are recorded as high-risk, so the rate is kept.
            In [0, 0.5).
        days: length of the observation window in days, at least 7.
        start: first day of the window: a timezone-naive date at midnight (a string such as
            ``"2025-01-01"``, a ``date`` or a ``Timestamp``).
        seed: seed of ``np.random.default_rng``; the same seed gives the same table.

    Returns:
        A DataFrame sorted by (timestamp, transaction_id) with a RangeIndex and the columns of
        :data:`COLUMNS` (dtypes documented in ``docs/bank_sim.md``).

    Raises:
        ValueError: an argument is out of its allowed range.
    """
    start_ts = _validate(n_transactions, n_banks, high_risk_rate, label_noise, days, start, seed)
    n = int(n_transactions)
    n_banks = int(n_banks)
    days = int(days)
    rng = np.random.default_rng(int(seed))
    horizon_s = days * SECONDS_PER_DAY

    # ---- banks and accounts ----------------------------------------------------------------
    bank_share = 1.0 / np.arange(1, n_banks + 1) ** BANK_SHARE_ZIPF
    bank_share /= bank_share.sum()

    mean_rate = float(TYPE_SHARES @ DAILY_RATE)
    mean_active_days = days * (1 - NEW_ACCOUNT_SHARE) + days * NEW_ACCOUNT_SHARE * 0.6
    n_acc = max(10, math.ceil(n / (mean_rate * mean_active_days)))
    acc_type = _choice(rng, TYPE_SHARES, n_acc)
    home = _choice(rng, bank_share, n_acc)
    opened_inside = rng.random(n_acc) < NEW_ACCOUNT_SHARE
    age_at_start = np.minimum(
        30 + np.floor(rng.exponential(MEAN_AGE_DAYS[acc_type])), MAX_AGE_DAYS
    ).astype(np.int64)
    inside_day = np.floor(rng.random(n_acc) * 0.8 * days).astype(np.int64)
    open_day = np.where(opened_inside, inside_day, -age_at_start)  # relative to window start
    first_day = np.maximum(open_day, 0)
    active_days = days - first_day
    activity = rng.gamma(ACTIVITY_SHAPE, 1.0 / ACTIVITY_SHAPE, n_acc)
    location = np.log(TYPICAL_AMOUNT[acc_type]) + rng.normal(0.0, ACCOUNT_LOCATION_SD, n_acc)
    balance_level = np.exp(location + rng.normal(BALANCE_LOG_MEAN, BALANCE_LOG_SD, n_acc))
    payday = rng.integers(0, 30, n_acc)
    account_effect = rng.normal(0.0, ACCOUNT_EFFECT_SD, n_acc)

    # Counterparty slots: category and bank of each (account, slot).
    slot_category = np.empty((n_acc, N_SLOTS), dtype=np.int8)
    for t in range(len(ACCOUNT_TYPES)):
        rows = np.flatnonzero(acc_type == t)
        slot_category[rows, :MULE_START] = _choice(
            rng, CATEGORY_MIX[t], rows.size * MULE_START
        ).reshape(rows.size, MULE_START)
    n_fraud_slots = N_SLOTS - MULE_START
    fraud_categories = _choice(rng, FRAUD_CATEGORY_MIX, n_acc * n_fraud_slots)
    slot_category[:, MULE_START:] = fraud_categories.reshape(n_acc, n_fraud_slots)
    same_prob = np.full(N_SLOTS, SAME_BANK_PROB)
    same_prob[MULE_START:] = FRAUD_SAME_BANK_PROB
    same_bank = rng.random((n_acc, N_SLOTS)) < same_prob
    slot_bank = np.repeat(home[:, None].astype(np.int8), N_SLOTS, axis=1)
    for b in range(n_banks):
        rows = np.flatnonzero(home == b)
        other_share = bank_share.copy()
        other_share[b] = 0.0
        other = _choice(rng, other_share, rows.size * N_SLOTS).reshape(rows.size, N_SLOTS)
        slot_bank[rows] = np.where(same_bank[rows], b, other)
    n_regular = REGULAR_MIN + rng.binomial(REGULAR_EXTRA_N, REGULAR_EXTRA_P, n_acc)
    n_mules = 1 + rng.binomial(N_MULE_SLOTS - 1, MULE_EXTRA_P, n_acc)

    # ---- compromise episodes ---------------------------------------------------------------
    episode_len_mean = EPISODE_MIN_TXNS + EPISODE_EXTRA_MEAN
    eligible = np.flatnonzero(active_days >= 4)
    n_episodes = min(
        round(FRAUD_SHARE_PER_RATE * high_risk_rate * n / episode_len_mean), eligible.size // 2
    )
    comp = np.sort(rng.choice(eligible, size=n_episodes, replace=False))
    ep_counts = EPISODE_MIN_TXNS + rng.poisson(EPISODE_EXTRA_MEAN, n_episodes)
    ep_counts = ep_counts[np.cumsum(ep_counts) <= n // 4]  # never more than a quarter of the rows
    comp = comp[: ep_counts.size]
    n_fraud = int(ep_counts.sum())
    ep_day = first_day[comp] + np.floor(rng.random(comp.size) * (active_days[comp] - 3))
    ep_start_s = (
        ep_day * SECONDS_PER_DAY
        + _choice(rng, FRAUD_HOUR_PROFILE / FRAUD_HOUR_PROFILE.sum(), comp.size) * SECONDS_PER_HOUR
        + rng.random(comp.size) * SECONDS_PER_HOUR
    )

    # ---- genuine transactions --------------------------------------------------------------
    n_genuine = n - n_fraud
    weight = DAILY_RATE[acc_type] * activity * active_days
    g_counts = rng.multinomial(n_genuine, weight / weight.sum())
    g_acc = np.repeat(np.arange(n_acc), g_counts)
    g_type = acc_type[g_acc]
    day = first_day[g_acc] + np.floor(rng.random(n_genuine) * active_days[g_acc]).astype(np.int64)
    weekday = (start_ts.day_of_week + day) % 7  # Monday = 0
    shifted = np.where(weekday == 5, day - 1, np.where(weekday == 6, day + 1, day))
    move = (
        (weekday >= 5)
        & (rng.random(n_genuine) < WEEKEND_SHIFT_PROB[g_type])
        & (shifted >= first_day[g_acc])
        & (shifted < days)
    )
    day = np.where(move, shifted, day)
    hour_cdf = np.cumsum(HOUR_PROFILES / HOUR_PROFILES.sum(axis=1, keepdims=True), axis=1)
    hour = _choice_cdf(rng, hour_cdf[g_type])
    g_time = (day * 24 + hour + rng.random(n_genuine)) * SECONDS_PER_HOUR
    # Sessions: some transactions follow the account's previous one by a short gap.
    order = np.lexsort((g_time, g_acc))
    g_acc, g_type, g_time = g_acc[order], g_type[order], g_time[order]
    follow = np.zeros(n_genuine, dtype=bool)
    follow[1:] = (g_acc[1:] == g_acc[:-1]) & (rng.random(n_genuine - 1) < FOLLOW_UP_PROB)
    gap = rng.exponential(FOLLOW_UP_MEAN_HOURS * SECONDS_PER_HOUR, n_genuine)
    prev_time = np.concatenate([[0.0], g_time[:-1]])
    g_time = np.where(follow, np.minimum(prev_time + gap, horizon_s - 1), g_time)

    occasional = rng.random(n_genuine) < OCCASIONAL_PROB[g_type]
    zipf_cdf = np.cumsum(1.0 / np.arange(1, N_REGULAR_SLOTS + 1) ** REGULAR_ZIPF)
    regular_slot = np.searchsorted(
        zipf_cdf, rng.random(n_genuine) * zipf_cdf[n_regular[g_acc] - 1], side="right"
    )
    g_slot = np.where(
        occasional,
        OCCASIONAL_START + rng.integers(0, N_OCCASIONAL_SLOTS, n_genuine),
        np.minimum(regular_slot, n_regular[g_acc] - 1),
    )
    g_category = slot_category[g_acc, g_slot]
    g_channel = _choice_rows(rng, CHANNEL_GIVEN_CATEGORY[g_category])
    g_log_amount = (
        location[g_acc]
        + CATEGORY_LOG_OFFSET[g_category]
        + rng.normal(0.0, 1.0, n_genuine) * AMOUNT_SD[g_type]
    )
    spike = rng.random(n_genuine) < SPIKE_PROB
    g_log_amount += np.where(spike, rng.uniform(*SPIKE_LOG_RANGE, n_genuine), 0.0)

    # ---- fraud (episode) transactions ------------------------------------------------------
    f_episode = np.repeat(np.arange(comp.size), ep_counts)
    f_acc = comp[f_episode]
    f_gap = rng.exponential(EPISODE_GAP_MEAN_HOURS * SECONDS_PER_HOUR, n_fraud)
    f_first = np.repeat(np.cumsum(ep_counts) - ep_counts, ep_counts)
    f_gap[f_first] = 0.0
    f_cum = np.cumsum(f_gap)
    f_time = np.minimum(ep_start_s[f_episode] + f_cum - f_cum[f_first], horizon_s - 1)
    to_mule = rng.random(n_fraud) < MULE_PROB
    f_slot = np.where(
        to_mule,
        MULE_START + rng.integers(0, n_mules[f_acc]),
        ONE_OFF_START + rng.integers(0, N_ONE_OFF_SLOTS, n_fraud),
    )
    f_category = slot_category[f_acc, f_slot]
    f_channel = _choice_rows(rng, FRAUD_CHANNEL_GIVEN_CATEGORY[f_category])
    f_log_amount = (
        location[f_acc]
        + CATEGORY_LOG_OFFSET[f_category]
        + rng.normal(FRAUD_LOG_UPLIFT[0], FRAUD_LOG_UPLIFT[1], n_fraud)
    )

    # ---- one table, sorted by (account, time) ----------------------------------------------
    acc = np.concatenate([g_acc, f_acc])
    time_s = np.floor(np.concatenate([g_time, f_time])).astype(np.int64)
    slot = np.concatenate([g_slot, f_slot])
    category = np.concatenate([g_category, f_category])
    channel = np.concatenate([g_channel, f_channel])
    log_amount = np.concatenate([g_log_amount, f_log_amount])
    is_fraud = np.concatenate([np.zeros(n_genuine, bool), np.ones(n_fraud, bool)])
    tiebreak = rng.random(n)
    order = np.lexsort((tiebreak, time_s, acc))
    acc, time_s, slot, category, channel, log_amount, is_fraud = (
        a[order] for a in (acc, time_s, slot, category, channel, log_amount, is_fraud)
    )
    a_type = acc_type[acc]
    amount = np.maximum(np.round(np.exp(log_amount), 2), 0.01)
    cp_bank = slot_bank[acc, slot]
    cross = cp_bank != home[acc]

    # Account runs in the sorted order.
    idx = np.arange(n)
    is_first = np.ones(n, dtype=bool)
    is_first[1:] = acc[1:] != acc[:-1]
    run_start = np.maximum.accumulate(np.where(is_first, idx, 0))

    hours_since_prev = np.empty(n)
    hours_since_prev[0] = np.nan
    hours_since_prev[1:] = (time_s[1:] - time_s[:-1]) / SECONDS_PER_HOUR
    hours_since_prev[is_first] = np.nan

    # Velocity over the preceding 24 h, [t - 24 h, t), via one global sorted key.
    key = acc.astype(np.int64) * (horizon_s + 2 * SECONDS_PER_DAY) + time_s
    lo = np.searchsorted(key, key - SECONDS_PER_DAY, side="left")
    here = np.searchsorted(key, key, side="left")
    txn_count_24h = (here - lo).astype(np.int64)
    cross_cum = np.concatenate([[0], np.cumsum(cross)])
    cross_bank_count_24h = (cross_cum[here] - cross_cum[lo]).astype(np.int64)

    # First payment to a counterparty; regulars of accounts older than the window are known.
    pair = acc.astype(np.int64) * N_SLOTS + slot
    first_use = np.zeros(n, dtype=bool)
    first_use[np.unique(pair, return_index=True)[1]] = True
    known = (slot < N_REGULAR_SLOTS) & (open_day[acc] < 0)
    new_counterparty = first_use & ~known

    # Hidden compromise window of each account.
    ep_lo = np.full(n_acc, np.iinfo(np.int64).max)
    ep_hi = np.full(n_acc, -1, dtype=np.int64)
    if n_fraud:
        np.minimum.at(ep_lo, acc[is_fraud], time_s[is_fraud])
        np.maximum.at(ep_hi, acc[is_fraud], time_s[is_fraud])
    in_episode = (time_s >= ep_lo[acc]) & (time_s <= ep_hi[acc])

    # Age; balance: monthly sawtooth, minus what the episode has drained so far (the bank
    # reimburses the account REIMBURSE_DAYS after the episode's last fraudulent transaction).
    age_days = (time_s // SECONDS_PER_DAY - open_day[acc]).astype(np.int64)
    day_of = time_s / SECONDS_PER_DAY
    since_payday = np.mod(day_of - payday[acc], 30.0) / 30.0
    level = balance_level[acc] * (1.5 - since_payday)
    level *= np.exp(rng.normal(0.0, BALANCE_NOISE_SD, n))
    fraud_paid = np.concatenate([[0.0], np.cumsum(np.where(is_fraud, amount, 0.0))])
    drained = fraud_paid[idx] - fraud_paid[run_start]
    drained *= time_s <= ep_hi[acc] + REIMBURSE_DAYS * SECONDS_PER_DAY
    balance_before = np.round(np.maximum(level - drained, 0.0), 2)

    # Amount relative to the account's own running history (hidden from the table).
    prior = np.log(TYPICAL_AMOUNT[a_type]) + CATEGORY_MIX[a_type] @ CATEGORY_LOG_OFFSET
    log_amt = np.log(amount)
    sum_cum = np.concatenate([[0.0], np.cumsum(log_amt)])
    n_prev = idx - run_start
    history = (HISTORY_PRIOR_WEIGHT * prior + sum_cum[idx] - sum_cum[run_start]) / (
        HISTORY_PRIOR_WEIGHT + n_prev
    )
    amount_ratio = np.clip(log_amt - history, 0.0, 4.0)

    hour_of_day = (time_s // SECONDS_PER_HOUR) % 24
    score = (
        W_AMOUNT_RATIO * amount_ratio
        + W_AMOUNT_OVER_BALANCE * (amount > balance_before)
        + W_UNUSUAL_HOUR * (hour_of_day < UNUSUAL_HOURS)
        + W_CROSS_BANK_VELOCITY * np.log1p(cross_bank_count_24h)
        + W_CROSS_BANK * cross
        + W_NEW_COUNTERPARTY * new_counterparty
        + W_YOUNG_ACCOUNT * (age_days < YOUNG_ACCOUNT_DAYS)
        + W_CATEGORY[category]
        + W_CHANNEL[channel]
        + W_EPISODE * in_episode
        + account_effect[acc]
        + rng.normal(0.0, SCORE_NOISE_SD, n)
    )
    intercept = _solve_intercept(score, high_risk_rate)
    label = rng.random(n) < _sigmoid(intercept + score)
    label = _flip_labels(rng, label, label_noise)

    # ---- release in time order -------------------------------------------------------------
    out = np.lexsort((idx, time_s))
    start_ns = np.datetime64(start_ts.to_datetime64(), "ns")
    timestamp = start_ns + (time_s[out] * 1_000_000_000).astype("timedelta64[ns]")
    banks = bank_names(n_banks)
    bank_dtype = pd.CategoricalDtype(banks)
    frame = pd.DataFrame(
        {
            ID_COLUMN: np.arange(n, dtype=np.int64),
            GROUP_COLUMN: acc[out].astype(np.int64),
            TIME_COLUMN: pd.Series(timestamp, dtype="datetime64[ns]"),
            INSTITUTION_COLUMN: pd.Categorical.from_codes(home[acc[out]], dtype=bank_dtype),
            "account_type": pd.Categorical.from_codes(
                a_type[out], dtype=pd.CategoricalDtype(list(ACCOUNT_TYPES))
            ),
            "account_age_days": age_days[out],
            "amount": amount[out].astype(np.float64),
            "channel": pd.Categorical.from_codes(
                channel[out], dtype=pd.CategoricalDtype(list(CHANNELS))
            ),
            "merchant_category": pd.Categorical.from_codes(
                category[out], dtype=pd.CategoricalDtype(list(MERCHANT_CATEGORIES))
            ),
            "counterparty_bank": pd.Categorical.from_codes(cp_bank[out], dtype=bank_dtype),
            "is_cross_bank": cross[out],
            "balance_before": balance_before[out].astype(np.float64),
            "hours_since_prev": hours_since_prev[out],
            "txn_count_24h": txn_count_24h[out],
            "cross_bank_count_24h": cross_bank_count_24h[out],
            "new_counterparty": new_counterparty[out],
            TARGET_COLUMN: label[out].astype(np.int64),
        }
    )
    return frame


def public_domain(
    *, n_banks: int = 5, days: int = 180, start: str | datetime.date = "2025-01-01"
) -> PublicDomain:
    """The public domain of the released table, from the simulator's configuration only.

    Covers every column :func:`dpshare.data.datasets.load_bank_sim` releases (all of
    :data:`COLUMNS` except the identifiers ``transaction_id`` and ``account_id``), the target
    included. Nothing is read from simulated values: category lists are the module constants and
    :func:`bank_names`; bounds follow from ``days``, ``start``, :data:`MAX_AGE_DAYS` and the
    documented caps ``DOMAIN_*`` (see ``docs/bank_sim.md``, "Public domain for DP fitting").

    Args:
        n_banks: as in :func:`simulate_bank_transactions`.
        days: as in :func:`simulate_bank_transactions`.
        start: as in :func:`simulate_bank_transactions`.

    Returns:
        A :class:`~dpshare.data.transformer.PublicDomain` for
        :meth:`~dpshare.data.transformer.TabularTransformer.fit_dp`.
    """
    from dpshare.data.transformer import PublicDomain

    start_ts = _validate(100, n_banks, 0.03, 0.0, days, start, 0)
    days = int(days)
    banks = bank_names(int(n_banks))
    window_hours = float(days * 24)
    return PublicDomain(
        bounds={
            # Whole days since opening: accounts open at most MAX_AGE_DAYS before the window
            # and transact in it, never before they open.
            "account_age_days": (0.0, float(MAX_AGE_DAYS + days - 1)),
            "amount": (0.0, DOMAIN_AMOUNT_CAP),
            "balance_before": (0.0, DOMAIN_BALANCE_CAP),
            # Two transactions of one account both lie inside the window.
            "hours_since_prev": (0.0, window_hours),
            "txn_count_24h": (0.0, float(DOMAIN_COUNT_24H_CAP)),
            "cross_bank_count_24h": (0.0, float(DOMAIN_COUNT_24H_CAP)),
        },
        categories={
            INSTITUTION_COLUMN: banks,
            "counterparty_bank": banks,
            "account_type": list(ACCOUNT_TYPES),
            "channel": list(CHANNELS),
            "merchant_category": list(MERCHANT_CATEGORIES),
            "is_cross_bank": [False, True],
            "new_counterparty": [False, True],
            TARGET_COLUMN: [0, 1],
        },
        time_ranges={
            # Whole seconds in [start, start + days): the last possible one is included.
            TIME_COLUMN: (start_ts, start_ts + pd.Timedelta(days=days) - pd.Timedelta(seconds=1)),
        },
    )


# ----------------------------------------------------------------------------------- helpers


def _validate(
    n_transactions: object,
    n_banks: object,
    high_risk_rate: object,
    label_noise: object,
    days: object,
    start: object,
    seed: object,
) -> pd.Timestamp:
    """Raise a ValueError naming the first argument outside its range; return the start."""

    def integer(name: str, value: object, low: int, high: int | None = None) -> int:
        if isinstance(value, Integral) and not isinstance(value, bool):
            v = int(value)
            if low <= v and (high is None or v <= high):
                return v
        allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise UserInputError(f"{name} must be {allowed}, got {value!r}")

    def fraction(name: str, value: object, low: float, high: float, low_open: bool) -> None:
        ok = isinstance(value, Real) and not isinstance(value, bool)
        if isinstance(value, Real):
            v = float(value)
            ok = ok and (low < v if low_open else low <= v) and v < high  # False for NaN
        if not ok:
            bracket = "(" if low_open else "["
            raise UserInputError(f"{name} must be in {bracket}{low}, {high}), got {value!r}")

    integer("n_transactions", n_transactions, 100)
    integer("n_banks", n_banks, 2, 26)
    fraction("high_risk_rate", high_risk_rate, 0.0, 0.5, low_open=True)
    fraction("label_noise", label_noise, 0.0, 0.5, low_open=False)
    n_days = integer("days", days, 7)
    integer("seed", seed, 0)
    bad_start = f"start must be a timezone-naive date such as '2025-01-01', got {start!r}"
    if not isinstance(start, str | datetime.date | np.datetime64):
        raise UserInputError(bad_start)
    try:
        start_ts = pd.Timestamp(start)
    except (TypeError, ValueError) as err:
        raise UserInputError(bad_start) from err
    if pd.isna(start_ts) or start_ts.tzinfo is not None or start_ts != start_ts.normalize():
        raise UserInputError(bad_start)
    if not pd.Timestamp.min <= start_ts <= pd.Timestamp.max - pd.Timedelta(days=n_days):
        raise UserInputError(
            f"start and start + days must lie within the datetime64[ns] range "
            f"({pd.Timestamp.min.date()} .. {pd.Timestamp.max.date()}), got start={start!r}, "
            f"days={days!r}"
        )
    return start_ts


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _solve_intercept(score: np.ndarray, rate: float) -> float:
    """The ``b`` with mean(sigmoid(b + score)) == rate, by bisection (the mean is increasing)."""
    low, high = -60.0, 60.0
    for _ in range(100):
        mid = 0.5 * (low + high)
        if _sigmoid(mid + score).mean() < rate:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


def _flip_labels(rng: np.random.Generator, label: np.ndarray, noise: float) -> np.ndarray:
    """Record ``round(noise * #positives)`` positives as negatives and as many negatives as
    positives (chosen uniformly), so the positive count is unchanged."""
    positives = np.flatnonzero(label)
    negatives = np.flatnonzero(~label)
    k = min(round(noise * positives.size), negatives.size)
    out = label.copy()
    if k:
        out[rng.choice(positives, size=k, replace=False)] = False
        out[rng.choice(negatives, size=k, replace=False)] = True
    return out


def _choice(rng: np.random.Generator, p: np.ndarray, size: int) -> np.ndarray:
    """``size`` draws of category indices with probabilities ``p``."""
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), p.size - 1)


def _choice_cdf(rng: np.random.Generator, cdf: np.ndarray) -> np.ndarray:
    """One draw per row of a (rows, k) matrix of cumulative probabilities."""
    u = rng.random(cdf.shape[0]) * cdf[:, -1]
    return np.minimum((u[:, None] >= cdf).sum(axis=1), cdf.shape[1] - 1)


def _choice_rows(rng: np.random.Generator, p: np.ndarray) -> np.ndarray:
    """One draw per row of a (rows, k) matrix of probabilities."""
    return _choice_cdf(rng, np.cumsum(p, axis=1))
