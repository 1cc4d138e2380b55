"""The one statistics module: one percentile definition and one interval method, used everywhere.

- Percentiles are numpy's default linear interpolation (what vLLM's `bench serve` reports);
  polars expressions use `quantile(q, interpolation="linear")`, which gives the same numbers.
- Intervals are Student t intervals (scipy); the unit of a sample is a round (or a trial), never a
  request (requests in one trial share the machine's state and are correlated).
- A speed change is paired: per interleaved round, the log ratio of the variant's value to the baseline's
  in the same round (`paired_change`); the 10% trimmed mean of those log ratios with its Tukey-McLaughlin t
  interval (Yuen's test: the t interval of the mean below 10 rounds, where nothing is trimmed),
  back-transformed. One stalled round no longer widens the interval of a run (docs/metrics.md).
- Every comparison ends in one of four verdicts (`verdict`): better, worse, equivalent (the whole interval
  within +-min_effect) or inconclusive; across a sweep, "significant" is Holm-corrected (`holm`).
- `difference` (Welch, unpaired) stays for comparisons that have no pairing (a sweep against an earlier one).

See docs/metrics.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    import polars as pl

Values = Iterable[float | None]  # a list, a numpy array or a polars Series of numbers; None and NaN are missing

PERCENTILES = (50, 90, 99)
LEVEL = 0.95


def finite(values: Values) -> npt.NDArray[np.float64]:
    """The finite values of an iterable as a float array (None and NaN dropped)."""
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    kept: npt.NDArray[np.float64] = arr[np.isfinite(arr)]
    return kept


def percentile(values: Values, q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation; NaN for no finite values."""
    arr = finite(values)
    return float(np.percentile(arr, q)) if arr.size else math.nan


def quantile_expr(column: str, q: float, *, pooled: bool = False) -> pl.Expr:
    """The polars expression for the same percentile (q in 0..1); `pooled` pools a list column (ITL gaps)."""
    import polars as pl

    expr = pl.col(column).explode() if pooled else pl.col(column)
    return expr.quantile(q, interpolation="linear")


def describe(values: Values) -> dict[str, float]:
    """mean, p50, p90, p99 of the finite values (NaN when there are none)."""
    arr = finite(values)
    if arr.size == 0:
        return {"mean": math.nan, **{f"p{p}": math.nan for p in PERCENTILES}}
    return {"mean": float(arr.mean()), **{f"p{p}": float(np.percentile(arr, p)) for p in PERCENTILES}}


def mean_interval(values: Values, level: float = LEVEL) -> tuple[float, float]:
    """Student t interval for the mean; (NaN, NaN) below two values."""
    from scipy import stats

    arr = finite(values)
    if arr.size < 2:
        return (math.nan, math.nan)
    if np.all(arr == arr[0]):
        return (float(arr[0]), float(arr[0]))
    low, high = stats.t.interval(level, arr.size - 1, loc=arr.mean(), scale=stats.sem(arr))
    return (float(low), float(high))


def slope_interval(
    x: ArrayLike, y: ArrayLike, level: float = LEVEL, *, effective_n: float | None = None
) -> tuple[float, float]:
    """Least-squares slope of y on x and the half-width of its Student t interval; (NaN, NaN) below three points.
    `effective_n` (< the number of points) widens the interval for correlated points: the standard error and the
    t degrees of freedom are those of `effective_n` independent points with the same residual spread."""
    from scipy import stats

    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xs.size < 3 or np.ptp(xs) == 0:
        return (math.nan, math.nan)
    dx = xs - xs.mean()
    sxx = float(dx @ dx)
    slope = float(dx @ (ys - ys.mean())) / sxx
    residuals = ys - ys.mean() - slope * dx
    stderr = math.sqrt(float(residuals @ residuals) / (xs.size - 2) / sxx)
    n = xs.size if effective_n is None else max(3.0, min(float(effective_n), xs.size))
    stderr *= math.sqrt(xs.size / n)
    return (slope, float(stats.t.ppf(0.5 + level / 2, n - 2)) * stderr)


@dataclass(frozen=True)
class Difference:
    """Change of a metric's mean from `a` (reference) to `b`, with a Welch t interval."""

    diff: float
    ci_low: float
    ci_high: float
    ratio: float
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float

    @property
    def change_pct(self) -> float:
        return (self.ratio - 1.0) * 100 if math.isfinite(self.ratio) else math.nan

    @property
    def ci_pct(self) -> tuple[float, float]:
        if not self.mean_a:
            return (math.nan, math.nan)
        return (self.ci_low / abs(self.mean_a) * 100, self.ci_high / abs(self.mean_a) * 100)

    def excludes_zero(self) -> bool:
        return bool(
            math.isfinite(self.ci_low) and math.isfinite(self.ci_high) and (self.ci_low > 0 or self.ci_high < 0)
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "change_pct": self.change_pct, "ci_pct": list(self.ci_pct)}


def difference(a: Values, b: Values, level: float = LEVEL) -> Difference:
    """Welch's t interval for mean(b) - mean(a) (scipy's `ttest_ind(equal_var=False)`); NaN below two samples."""
    from scipy import stats

    xa, xb = finite(a), finite(b)
    nan = math.nan
    if xa.size < 2 or xb.size < 2:
        mean_a = float(xa.mean()) if xa.size else nan
        mean_b = float(xb.mean()) if xb.size else nan
        ratio = mean_b / mean_a if xa.size and xb.size and mean_a else nan
        return Difference(mean_b - mean_a, nan, nan, ratio, int(xa.size), int(xb.size), mean_a, mean_b)
    diff = float(xb.mean() - xa.mean())
    if np.all(xa == xa[0]) and np.all(xb == xb[0]):  # no spread at all: the interval is the point
        low = high = diff
    else:
        result = stats.ttest_ind(xb, xa, equal_var=False)
        low, high = result.confidence_interval(level)
    ratio = float(xb.mean() / xa.mean()) if xa.mean() else nan
    return Difference(
        diff, float(low), float(high), ratio, int(xa.size), int(xb.size), float(xa.mean()), float(xb.mean())
    )


def is_significant(change: Difference, noise_floor_pct: float | None = None) -> bool:
    """The interval excludes zero and the relative change is larger than the noise floor (in percent)."""
    if not change.excludes_zero():
        return False
    if noise_floor_pct is None or not math.isfinite(noise_floor_pct):
        return True
    return abs(change.change_pct) > noise_floor_pct


VERDICTS = ("better", "worse", "equivalent", "inconclusive")
MIN_EFFECT = 0.05  # the default practical threshold of a speed change (relative): docs/metrics.md


def verdict(low: float, high: float, *, min_effect: float, higher_is_better: bool = True) -> str:
    """One of `VERDICTS` for a change whose interval is [low, high] (same units as `min_effect`): better/worse
    when the interval excludes 0 and its midpoint is beyond `min_effect` in the good/bad direction; equivalent
    when the whole interval lies within +-`min_effect`; inconclusive otherwise (and for a missing interval)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    point = (low + high) / 2
    if (low > 0 or high < 0) and abs(point) > min_effect:
        up = point > 0
        return "better" if up == higher_is_better else "worse"
    if -min_effect <= low and high <= min_effect:
        return "equivalent"
    return "inconclusive"


@dataclass(frozen=True)
class PairedChange:
    """A relative change measured in paired rounds: the (trimmed) mean per-round log ratio, back-transformed.
    `change`, `ci_low`, `ci_high` and `half_width` are fractions of the baseline (0.1 = +10%); `p_value` tests no
    change. `precision` is the half-width relative to the measured ratio, (high - low) / 2 / (1 + change): what a
    `precision` target asks for. It equals `half_width` near no change, and stays reachable for a large one
    (batch 8 at x3.05 with an interval of x2.78...x3.34 is +-9.2% precise, +-28 points of the baseline wide)."""

    change: float
    ci_low: float
    ci_high: float
    half_width: float
    rounds: int
    p_value: float
    sd_log: float

    @property
    def precision(self) -> float:
        return self.half_width / (1 + self.change) if self.change > -1 else math.nan

    def to_pct(self) -> dict[str, float]:
        return {
            "change_pct": self.change * 100,
            "ci_low_pct": self.ci_low * 100,
            "ci_high_pct": self.ci_high * 100,
            "half_width_pct": self.half_width * 100,
            "precision_pct": self.precision * 100,
        }


TRIM = 0.1  # the share of rounds cut from each end of the per-round log ratios (docs/metrics.md, "Estimator")


def paired_change(baseline: ArrayLike, variant: ArrayLike, level: float = LEVEL, trim: float = TRIM) -> PairedChange:
    """The trimmed-mean t interval over rounds of log(variant_r / baseline_r); the two arrays are aligned by round
    (a round with a missing or non-positive value on either side is dropped). NaN interval below two rounds."""
    b, v = np.asarray(baseline, dtype=float), np.asarray(variant, dtype=float)
    keep = np.isfinite(b) & np.isfinite(v) & (b > 0) & (v > 0)
    return paired_from_log_ratios(np.log(v[keep] / b[keep]), level, trim)


def paired_from_log_ratios(ratios: ArrayLike, level: float = LEVEL, trim: float = TRIM) -> PairedChange:
    """Yuen's one-sample trimmed t: with g = floor(trim * n) rounds cut from each end, the centre is the mean of
    the rest and its standard error the winsorised SD / ((1 - 2 g / n) sqrt(n)), on n - 2g - 1 degrees of
    freedom (the ordinary t interval when g = 0). `sd_log` is the SD that behaves so, for planning rounds."""
    d = np.sort(np.asarray(ratios, dtype=float))
    n = int(d.size)
    g = int(math.floor(trim * n))
    if n < 2 or g == 0:
        return paired_from_moments(
            float(d.mean()) if n else math.nan, float(d.std(ddof=1)) if n > 1 else math.nan, n, level
        )
    kept = d[g : n - g]
    winsorised = np.clip(d, kept[0], kept[-1])
    effective_sd = float(winsorised.std(ddof=1)) / (1 - 2 * g / n)
    return paired_from_moments(float(kept.mean()), effective_sd, n, level, dof=n - 2 * g - 1)


def paired_from_moments(mean: float, sd: float, n: int, level: float = LEVEL, dof: int | None = None) -> PairedChange:
    """The change from the centre, SD (ddof 1) and count of the per-round log ratios, with a t interval on `dof`
    degrees of freedom (n - 1 unless given)."""
    from scipy import special

    nan = math.nan
    if n == 0:
        return PairedChange(nan, nan, nan, nan, 0, nan, nan)
    if n < 2:
        return PairedChange(math.expm1(mean), nan, nan, nan, n, nan, nan)
    if sd == 0:
        p = 1.0 if mean == 0 else 0.0
        return PairedChange(math.expm1(mean), math.expm1(mean), math.expm1(mean), 0.0, n, p, 0.0)
    dof = n - 1 if dof is None else dof
    se = sd / math.sqrt(n)
    t = float(special.stdtrit(dof, 0.5 + level / 2))  # the t quantile (scipy.stats.t.ppf, as a fast ufunc)
    low, high = math.expm1(mean - t * se), math.expm1(mean + t * se)
    p = float(2 * special.stdtr(dof, -abs(mean) / se))
    return PairedChange(math.expm1(mean), low, high, (high - low) / 2, n, p, sd)


def rounds_for(sd_log: float, precision: float, level: float = LEVEL) -> int:
    """Rounds a paired t interval needs for a relative half-width of `precision`, given the SD of the per-round
    log ratio (at least 3; found by iterating because t depends on the rounds)."""
    from scipy import special

    if not (math.isfinite(sd_log) and sd_log > 0):
        return 3
    target = math.log1p(precision)
    n = 3
    while n < 100_000:
        if special.stdtrit(n - 1, 0.5 + level / 2) * sd_log / math.sqrt(n) <= target:
            return n
        n += 1
    return n


def holm(p_values: Values) -> list[float]:
    """Holm-adjusted p-values (step-down, family-wise error control), in the input's order; NaN stays NaN."""
    p = np.asarray([math.nan if v is None else v for v in p_values], dtype=float)
    idx = [i for i in np.argsort(p) if math.isfinite(p[i])]
    m, out, running = len(idx), np.full(p.size, math.nan), 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def mad_outliers(values: Values, threshold: float = 5.0) -> list[bool]:
    """True for a value beyond `threshold` scaled MADs (1.4826 x MAD, the SD of a normal) of the median;
    all False when fewer than 4 values or no spread."""
    arr = np.asarray([math.nan if v is None else v for v in values], dtype=float)
    ok = np.isfinite(arr)
    if ok.sum() < 4:
        return [False] * arr.size
    median = float(np.median(arr[ok]))
    mad = 1.4826 * float(np.median(np.abs(arr[ok] - median)))
    if mad == 0:
        return [False] * arr.size
    return [bool(o and abs(x - median) > threshold * mad) for x, o in zip(arr, ok)]


def json_safe(value: Any) -> Any:
    """NaN and infinities become None, recursively, so `json.dumps` writes valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return value


def pareto_mask(df: pl.DataFrame, objectives: dict[str, bool]) -> list[bool]:
    """True where no other row is at least as good on every objective and better on one (rows with a
    missing objective are never on the front)."""
    if df.is_empty():
        return []
    import polars as pl

    values = np.column_stack([df[c].cast(pl.Float64).fill_null(np.nan).to_numpy() for c in objectives])
    scores = values * np.array([1.0 if up else -1.0 for up in objectives.values()])
    complete = ~np.isnan(scores).any(axis=1)
    valid = scores[complete]
    mask = np.zeros(len(scores), dtype=bool)
    for i in np.flatnonzero(complete):
        dominated = (np.all(valid >= scores[i], axis=1) & np.any(valid > scores[i], axis=1)).any()
        mask[i] = not dominated
    return mask.tolist()


def paired_score_interval(reference: ArrayLike, variant: ArrayLike, level: float = LEVEL) -> tuple[float, float, float]:
    """(change, low, high) of mean(variant - reference) for scores paired on the same items: Bonett and Price's
    adjusted Wald interval (2012), i.e. a Wald interval on the differences with two pseudo-items added, one at
    +range and one at -range (range = 1 for scores in [0, 1]). For 0/1 scores that is their interval for a
    difference of paired proportions: it covers at the nominal rate, and when no item changed it still has the
    width the item count allows (a bootstrap over items would shrink to the point and call 10 items "the same").
    `change` is the observed mean difference. NaN for no items."""
    from scipy import stats

    a, b = np.asarray(reference, dtype=float), np.asarray(variant, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    d = b[keep] - a[keep]
    if d.size == 0:
        return (math.nan, math.nan, math.nan)
    values = np.concatenate([a[keep], b[keep]])
    spread = max(1.0, float(values.max() - values.min()))
    augmented = np.concatenate([d, [spread, -spread]])
    centre = float(augmented.mean())
    se = math.sqrt(float(np.mean(augmented**2)) - centre**2) / math.sqrt(augmented.size)
    half = float(stats.norm.ppf(0.5 + level / 2)) * se
    return (float(d.mean()), centre - half, centre + half)


def mcnemar_exact(reference: ArrayLike, variant: ArrayLike) -> float:
    """Two-sided p-value of McNemar's exact test on paired 0/1 outcomes: a binomial test (p = 1/2) of the items
    only one of the two got right; 1.0 when no item differs."""
    from scipy import stats

    a, b = np.asarray(reference, dtype=float), np.asarray(variant, dtype=float)
    lost, gained = int(np.sum((a == 1) & (b == 0))), int(np.sum((a == 0) & (b == 1)))
    if lost + gained == 0:
        return 1.0
    return float(stats.binomtest(min(lost, gained), lost + gained, 0.5).pvalue)


def ratio_interval(
    numerators: ArrayLike, denominators: ArrayLike, level: float = LEVEL
) -> tuple[float, float, float, float]:
    """(estimate, low, high, p) of sum(numerators) / sum(denominators) over independent clusters (chunks, prompts):
    a Student t interval with n-1 degrees of freedom on the linearised (delta-method) residuals of the ratio,
    the p-value of the estimate against 0. NaN below two clusters; the point when the residuals are all zero."""
    from scipy import stats

    y, x = np.asarray(numerators, dtype=float), np.asarray(denominators, dtype=float)
    keep = np.isfinite(y) & np.isfinite(x)
    y, x = y[keep], x[keep]
    if y.size == 0 or x.sum() == 0:
        return (math.nan, math.nan, math.nan, math.nan)
    estimate = float(y.sum() / x.sum())
    if y.size < 2:
        return (estimate, math.nan, math.nan, math.nan)
    residuals = (y - estimate * x) / x.mean()
    se = float(residuals.std(ddof=1)) / math.sqrt(y.size)
    if se == 0:
        return (estimate, estimate, estimate, 1.0 if estimate == 0 else 0.0)
    half = float(stats.t.ppf(0.5 + level / 2, y.size - 1)) * se
    p = float(2 * stats.t.sf(abs(estimate) / se, y.size - 1))
    return (estimate, estimate - half, estimate + half, p)
