"""Synthetic insurance claims with known fraud scenarios and each claim's true fraud probability.

The generator is vectorised numpy (a million claims in a few seconds) and seeded. It produces
the columns of :mod:`fraud_core.schema` and four fraud scenarios with distinct signatures:

``provider_ring``
    A few colluding providers inflate amounts; claims through them are far more likely fraud.
``early_claim``
    A claim within 30 days of policy inception.
``claim_burst``
    A policyholder files several claims within 30 days.
``near_limit_late``
    An amount just under the coverage limit, reported more than 30 days after the incident.

Each claim's true fraud probability is a function of what the claim shows (plus the ring
membership of its provider), and the label is drawn from it. Scoring by that probability is the
Bayes-optimal ranking, so its average precision is the ceiling a model is compared against.
The probability is kept in ``true_fraud_probability``, which is never a feature.

``drift`` makes later claims differ: the near-limit-late scenario becomes more frequent and
amounts inflate, so drift checks and retraining have something real to find.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fraud_core import schema

SCENARIOS = ("provider_ring", "early_claim", "claim_burst", "near_limit_late")
EPOCH = np.datetime64("2024-01-01", "D")

# Logit weights of the true fraud probability: base rate plus one term per scenario signature.
_BASE_LOGIT = -5.9
_WEIGHTS = {
    "provider_ring": 3.6,
    "early_claim": 4.0,
    "claim_burst": 3.4,
    "near_limit_late": 4.4,
    "theft_without_police": 1.0,
    "no_witness_bodily_injury": 0.8,
}
_AMOUNT_MEDIAN = {
    "collision": 2400.0,
    "theft": 6000.0,
    "fire": 15000.0,
    "water_damage": 4500.0,
    "bodily_injury": 9000.0,
    "vandalism": 900.0,
    "windscreen": 400.0,
}
_INCIDENT_P = np.array([0.34, 0.10, 0.03, 0.16, 0.08, 0.12, 0.17])
_POLICE_P = {
    "collision": 0.55,
    "theft": 0.85,
    "fire": 0.6,
    "water_damage": 0.03,
    "bodily_injury": 0.7,
    "vandalism": 0.5,
    "windscreen": 0.02,
}
_LIMITS = np.array([5_000.0, 10_000.0, 25_000.0, 50_000.0, 100_000.0])
_DEDUCTIBLES = np.array([0.0, 250.0, 500.0, 1000.0])


@dataclass(frozen=True)
class SimulationConfig:
    """Knobs of the simulator.

    Attributes:
        n_claims: number of claims to generate.
        days: the claims span this many days from ``start_date``.
        start_date: first claim date (ISO).
        seed: random seed; the same config always gives the same claims.
        drift: strength of the drift applied over the second half of the period (0 = none).
        label_coverage: fraction of claims whose investigation outcome is known.
        id_prefix: prefix of claim ids, so separate simulations never collide.
    """

    n_claims: int = 100_000
    days: int = 365
    start_date: str = "2024-01-01"
    seed: int = 7
    drift: float = 0.0
    label_coverage: float = 1.0
    id_prefix: str = "CLM"


def _ids(prefix: str, codes: np.ndarray, width: int) -> np.ndarray:
    return np.char.add(prefix, np.char.zfill(codes.astype(str), width)).astype(object)


def simulate_claims(config: SimulationConfig | None = None) -> pd.DataFrame:
    """Generate claims (sorted by claim date) with labels, true probabilities and scenarios.

    Returns:
        A frame with the columns of :data:`fraud_core.schema.CLAIM_COLUMNS` plus
        ``scenario`` (the scenario signatures the claim shows, ``+``-joined; ``""`` for none),
        which is documentation for people and tests, never a feature.
    """
    cfg = config or SimulationConfig()
    if cfg.n_claims <= 0:
        raise ValueError(f"n_claims must be positive, got {cfg.n_claims}")
    if cfg.days <= 0:
        raise ValueError(f"days must be positive, got {cfg.days}")
    rng = np.random.default_rng(cfg.seed)
    n = cfg.n_claims

    # --- entities -------------------------------------------------------------------------
    n_holders = max(10, n // 3)
    n_providers = max(20, n // 400)
    holder_limit = rng.choice(_LIMITS, size=n_holders, p=[0.15, 0.3, 0.3, 0.17, 0.08])
    holder_deductible = rng.choice(_DEDUCTIBLES, size=n_holders, p=[0.1, 0.35, 0.4, 0.15])
    holder_region = rng.integers(0, len(schema.REGIONS), n_holders)
    holder_channel = rng.choice(len(schema.CHANNELS), size=n_holders, p=[0.35, 0.2, 0.3, 0.15])
    holder_asset_age = np.minimum(rng.gamma(2.0, 4.0, n_holders), 60).astype(np.int64)
    holder_prior = rng.poisson(0.6, n_holders)
    ring = np.zeros(n_providers, dtype=bool)
    ring[rng.choice(n_providers, size=max(1, n_providers // 40), replace=False)] = True

    # --- claims: who, when ----------------------------------------------------------------
    # A burst is one seed claim followed by 2-4 more by the same policyholder within 30 days.
    n_burst_seeds = int(n * 0.004)
    extra = rng.integers(2, 5, n_burst_seeds)
    n_burst = int(extra.sum())
    n_regular = n - n_burst
    if n_regular <= 0:
        raise ValueError("n_claims too small for the scenario mix")
    # Policyholder activity is skewed: a few customers claim often.
    weights = rng.pareto(4.0, n_holders) + 1.0
    holder = rng.choice(n_holders, size=n_regular, p=weights / weights.sum())
    day = rng.integers(0, cfg.days, n_regular)
    seed_idx = rng.choice(n_regular, size=n_burst_seeds, replace=False)
    burst_holder = np.repeat(holder[seed_idx], extra)
    burst_day = np.minimum(
        np.repeat(day[seed_idx], extra) + rng.integers(1, 29, n_burst), cfg.days - 1
    )
    holder = np.concatenate([holder, burst_holder])
    day = np.concatenate([day, burst_day])
    order = np.argsort(day, kind="stable")
    holder, day = holder[order], day[order]
    t = day / max(cfg.days - 1, 1)  # position in the period, 0..1, drives drift
    late = np.clip((t - 0.5) * 2.0, 0.0, 1.0) * cfg.drift

    # --- policy inception: most policies are old; some customers are brand new ----------------
    first_day = np.full(n_holders, np.iinfo(np.int64).max)
    np.minimum.at(first_day, holder, day)
    new_customer = rng.random(n_holders) < 0.03
    start_offset = np.where(
        new_customer, rng.integers(0, 30, n_holders), rng.integers(31, 2500, n_holders)
    )
    holder_start = np.where(first_day < np.iinfo(np.int64).max, first_day, 0) - start_offset
    days_since_start = day - holder_start[holder]

    # --- what happened, how much ------------------------------------------------------------
    incident = rng.choice(len(schema.INCIDENT_TYPES), size=n, p=_INCIDENT_P)
    medians = np.array([_AMOUNT_MEDIAN[k] for k in schema.INCIDENT_TYPES])
    amount = medians[incident] * rng.lognormal(0.0, 0.6, n) * (1.0 + 0.8 * late)
    provider = rng.integers(0, n_providers, n)
    at_ring = ring[provider]
    amount = np.where(at_ring, amount * rng.uniform(1.4, 2.4, n), amount)
    limit = holder_limit[holder]
    deductible = holder_deductible[holder]
    report_delay = np.minimum(rng.geometric(0.25, n) - 1, 25)
    # Near-limit-late: amount just under the limit, reported late (more of it under drift).
    nll = rng.random(n) < 0.012 * (1.0 + 6.0 * late)
    amount = np.where(nll, limit * rng.uniform(0.9, 0.995, n), amount)
    report_delay = np.where(nll, rng.integers(31, 120, n), report_delay)
    # Some honest claims are reported late too, and some large honest claims hit the limit.
    honest_late = (~nll) & (rng.random(n) < 0.03)
    report_delay = np.where(honest_late, rng.integers(20, 90, n), report_delay)
    amount = np.round(np.clip(amount, 50.0, limit * 0.999), 2).astype(np.float64)

    incident_name = np.array(schema.INCIDENT_TYPES, dtype=object)[incident]
    police_p = np.array([_POLICE_P[k] for k in schema.INCIDENT_TYPES])[incident]
    police = rng.random(n) < police_p
    witnesses = rng.poisson(0.9, n)

    # --- true fraud probability from the signatures the claim shows -------------------------------
    holder_recent = _recent_count(holder, day, window=30)
    signatures = {
        "provider_ring": at_ring,
        "early_claim": days_since_start < 30,
        "claim_burst": holder_recent >= 2,
        "near_limit_late": (amount >= 0.9 * limit) & (report_delay > 30),
    }
    logit = _BASE_LOGIT + sum(_WEIGHTS[k] * v for k, v in signatures.items())
    logit = logit + _WEIGHTS["theft_without_police"] * ((incident_name == "theft") & ~police)
    logit = logit + _WEIGHTS["no_witness_bodily_injury"] * (
        (incident_name == "bodily_injury") & (witnesses == 0)
    )
    prob = 1.0 / (1.0 + np.exp(-logit))
    is_fraud = rng.random(n) < prob
    labelled = rng.random(n) < cfg.label_coverage

    scenario = np.full(n, "", dtype=object)
    for name, mask in signatures.items():
        scenario = np.where(mask, np.where(scenario == "", name, scenario + "+" + name), scenario)

    start = np.datetime64(cfg.start_date, "D")
    claim_date = start + day.astype("timedelta64[D]")
    frame = pd.DataFrame(
        {
            "claim_id": _ids(f"{cfg.id_prefix}-", np.arange(n), 9),
            "policy_id": _ids("POL-", holder, 8),
            "policyholder_id": _ids("PH-", holder, 8),
            "provider_id": _ids("PRV-", provider, 6),
            "claim_date": claim_date.astype("datetime64[ns]"),
            "policy_start_date": (start + holder_start[holder].astype("timedelta64[D]")).astype(
                "datetime64[ns]"
            ),
            "incident_type": incident_name,
            "claimed_amount": amount,
            "coverage_limit": limit,
            "deductible": deductible,
            "report_delay_days": report_delay.astype(np.int64),
            "police_report": police,
            "witnesses": witnesses.astype(np.int64),
            "region": np.array(schema.REGIONS, dtype=object)[holder_region[holder]],
            "channel": np.array(schema.CHANNELS, dtype=object)[holder_channel[holder]],
            "asset_age_years": holder_asset_age[holder],
            "prior_claims": holder_prior[holder].astype(np.int64),
            "is_fraud": pd.array(np.where(labelled, is_fraud, False), dtype="boolean"),
            "true_fraud_probability": prob,
            "scenario": scenario,
        }
    )
    if cfg.label_coverage < 1.0:
        frame.loc[~labelled, "is_fraud"] = pd.NA
    return frame


def _recent_count(entity: np.ndarray, day: np.ndarray, window: int) -> np.ndarray:
    """Claims by the same entity in the ``window`` days up to each claim's day, excluding itself.

    Same-day claims count (they are known when the claim is scored). This is the same definition
    as the history features in :mod:`fraud_core.features`.
    """
    span = int(day.max()) + window + 2
    key = entity.astype(np.int64) * span + day.astype(np.int64)
    sorted_key = np.sort(key)
    upto = np.searchsorted(sorted_key, key, side="right")
    since = np.searchsorted(sorted_key, key - window, side="left")
    return (upto - since - 1).astype(np.int64)


def inject_bad_rows(claims: pd.DataFrame, fraction: float, seed: int = 0) -> pd.DataFrame:
    """Corrupt a fraction of rows the way real feeds go wrong (for demos and tests).

    Kinds: negative amount, amount above the limit, unknown region, missing policyholder,
    policy starting after the claim, a duplicated claim id, text in a numeric field.
    The frame is returned as object columns where text was injected.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    out = claims.copy()
    n_bad = int(round(len(out) * fraction))
    if n_bad == 0:
        return out
    rows = rng.choice(len(out), size=n_bad, replace=False)
    kinds = rng.integers(0, 7, n_bad)
    out["claimed_amount"] = out["claimed_amount"].astype(object)
    out["region"] = out["region"].astype(object)
    out["policyholder_id"] = out["policyholder_id"].astype(object)
    for row, kind in zip(rows, kinds, strict=True):
        if kind == 0:
            out.iat[row, out.columns.get_loc("claimed_amount")] = -abs(
                float(claims["claimed_amount"].iat[row])
            )
        elif kind == 1:
            out.iat[row, out.columns.get_loc("claimed_amount")] = (
                float(claims["coverage_limit"].iat[row]) * 1.5
            )
        elif kind == 2:
            out.iat[row, out.columns.get_loc("region")] = "atlantis"
        elif kind == 3:
            out.iat[row, out.columns.get_loc("policyholder_id")] = None
        elif kind == 4:
            out.iat[row, out.columns.get_loc("policy_start_date")] = claims["claim_date"].iat[
                row
            ] + pd.Timedelta(days=10)
        elif kind == 5:
            other = (row + 1) % len(out)
            out.iat[row, out.columns.get_loc("claim_id")] = claims["claim_id"].iat[other]
        else:
            out.iat[row, out.columns.get_loc("claimed_amount")] = "twelve hundred"
    return out


def split_into_batches(claims: pd.DataFrame, n_batches: int) -> list[pd.DataFrame]:
    """Cut claims into ``n_batches`` consecutive date ranges (as a claims system exports them)."""
    if n_batches <= 0:
        raise ValueError(f"n_batches must be positive, got {n_batches}")
    edges = np.linspace(0, len(claims), n_batches + 1).astype(int)
    return [
        claims.iloc[a:b].reset_index(drop=True) for a, b in zip(edges[:-1], edges[1:], strict=True)
    ]


def write_landing_files(
    batches: list[pd.DataFrame], target: str, fmt: str = "parquet", prefix: str = "claims"
) -> list[str]:
    """Write batches as landing files (``parquet``, ``csv``, ``jsonl`` or ``mixed``) under
    ``target`` (a folder or any fsspec URL). File names carry the batch's date range, so they
    sort in arrival order and become readable batch ids. Returns the written paths."""
    import fsspec

    formats = ("parquet", "csv", "jsonl")
    if fmt not in (*formats, "mixed"):
        raise ValueError(f"unknown format {fmt!r}: use parquet, csv, jsonl or mixed")
    fs, root = fsspec.core.url_to_fs(target)
    fs.makedirs(root, exist_ok=True)
    written = []
    for i, batch in enumerate(batches):
        kind = formats[i % 3] if fmt == "mixed" else fmt
        first = pd.Timestamp(batch["claim_date"].min()).strftime("%Y%m%d")
        last = pd.Timestamp(batch["claim_date"].max()).strftime("%Y%m%d")
        path = f"{root.rstrip('/')}/{prefix}_{i:03d}_{first}_{last}.{kind}"
        out = batch.drop(columns=["scenario"], errors="ignore")
        with fs.open(path, "wb") as fh:
            if kind == "parquet":
                # A column that mixes numbers and text travels as text, as real feeds do.
                mixed = [c for c in out.columns if out[c].dtype == object]
                out.astype(dict.fromkeys(mixed, "string")).to_parquet(fh, index=False)
            elif kind == "csv":
                out.to_csv(fh, index=False, date_format="%Y-%m-%d")
            else:
                out.to_json(fh, orient="records", lines=True, date_format="iso", date_unit="s")
        written.append(
            path if "://" not in target else f"{target.rstrip('/')}/{path.rsplit('/', 1)[1]}"
        )
    return written
