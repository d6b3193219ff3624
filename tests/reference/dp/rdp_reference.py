"""Independent reference for FedLlm's RDP accountant (src/FedLlm/Privacy/RdpAccountant.cs).

Writes rdp_golden.json next to this file. Run with Debian's python (it has mpmath):

    /usr/bin/python3 tests/reference/dp/rdp_reference.py           # rewrite the golden file
    /usr/bin/python3 tests/reference/dp/rdp_reference.py --check   # recompute; exit 1 if the committed file differs

Why this is independent of the C# code: the C# side evaluates A_alpha with the log-space series of Mironov, Talwar and
Zhang 2019 (section 3.3; an erfc series for fractional orders). Here A_alpha comes from its *definition*,

    A_alpha = E_{z ~ N(0, sigma^2)} [ ((1 - q) + q * exp((2z - 1) / (2 sigma^2)))^alpha ]

(Mironov, Talwar, Zhang 2019, section 3.1), evaluated in 30-digit arithmetic with mpmath:
  * integer orders: the binomial expansion of the bracket, term by term, exactly (no logs, no truncation);
  * fractional orders: numerical integration (mpmath.quad, tanh-sinh) with break points at the two modes z ~ 0 and
    z ~ alpha of the integrand, cross-checked against the exact sum at neighbouring integer orders (the script aborts
    if quadrature and exact sum disagree by more than 1e-14 relative).
RDP_alpha = log(A_alpha) / (alpha - 1) for one step; T steps compose to T * RDP_alpha (Mironov 2017, Prop. 1).
(eps, delta) conversions, both evaluated in mpmath:
  * "improved": eps = min_alpha [ rdp + log((alpha-1)/alpha) - (log delta + log alpha) / (alpha - 1) ]
    (Balle, Barthe, Gaboardi, Hsu, Sato 2020, Theorem 21; the rule of Opacus' get_privacy_spent), floored at 0;
  * "classic": eps = min_alpha [ rdp + log(1/delta) / (alpha - 1) ] (Mironov 2017, Proposition 3), the rule of
    TF-Privacy's README numbers.
"""
import json
import math
import os
import sys

import mpmath as mp

mp.mp.dps = 30

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "rdp_golden.json")

# The order list of TF-Privacy's compute_dp_sgd_privacy and dp_accounting's examples.
TF_ORDERS = [1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5] + [float(a) for a in range(5, 64)] + [128.0, 256.0, 512.0]
# Opacus' DEFAULT_ALPHAS.
OPACUS_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + [float(a) for a in range(12, 64)]
# Fractional orders beyond the lists, to exercise the fractional series far from 1.
EXTRA_FRACTIONAL = [5.5, 10.9, 20.5]


def a_exact_integer(q, sigma, alpha):
    """A_alpha for integer alpha: sum_k C(alpha,k) (1-q)^(alpha-k) q^k exp((k^2-k)/(2 sigma^2)), exactly."""
    q = mp.mpf(q)
    s2 = 2 * mp.mpf(sigma) ** 2
    total = mp.mpf(0)
    for k in range(alpha + 1):
        total += mp.binomial(alpha, k) * (1 - q) ** (alpha - k) * q ** k * mp.exp(mp.mpf(k * k - k) / s2)
    return total


def a_quadrature(q, sigma, alpha):
    """A_alpha for any alpha > 1 by integrating its definition."""
    q = mp.mpf(q)
    sigma = mp.mpf(sigma)
    alpha = mp.mpf(alpha)

    def integrand(z):
        ratio = (1 - q) + q * mp.exp((2 * z - 1) / (2 * sigma ** 2))
        return mp.npdf(z, 0, sigma) * ratio ** alpha

    # The integrand is a mixture of bumps of width sigma between z = 0 and z = alpha; cut there so tanh-sinh
    # sees smooth pieces.
    top = alpha + 12 * sigma
    pieces = max(8, int(mp.ceil((top + 12 * sigma) / sigma)))
    points = [-mp.inf] + [-12 * sigma + (top + 12 * sigma) * i / pieces for i in range(pieces + 1)] + [mp.inf]
    return mp.quad(integrand, points)


def log_a(q, sigma, alpha):
    if float(alpha).is_integer():
        return mp.log(a_exact_integer(q, sigma, int(alpha)))
    return mp.log(a_quadrature(q, sigma, alpha))


def rdp_one_step(q, sigma, alpha):
    """RDP of one sampled-Gaussian step at order alpha, as an mpf (or +inf)."""
    if q == 0:
        return mp.mpf(0)
    if sigma == 0:
        return mp.inf
    if q == 1:
        return mp.mpf(alpha) / (2 * mp.mpf(sigma) ** 2)
    return log_a(q, sigma, alpha) / (mp.mpf(alpha) - 1)


def eps_improved(orders, rdp, delta):
    best = (mp.inf, None)
    for a, r in zip(orders, rdp):
        a = mp.mpf(a)
        e = r + mp.log((a - 1) / a) - (mp.log(delta) + mp.log(a)) / (a - 1)
        if e < best[0]:
            best = (e, a)
    return (max(best[0], mp.mpf(0)), best[1])


def eps_classic(orders, rdp, delta):
    best = (mp.inf, None)
    for a, r in zip(orders, rdp):
        e = r - mp.log(delta) / (mp.mpf(a) - 1)
        if e < best[0]:
            best = (e, mp.mpf(a))
    return best


def self_check_quadrature():
    """Quadrature must agree with the exact sum where both apply, else the fractional golden values mean nothing."""
    for q, sigma, alpha in [(0.01, 0.5, 2), (0.01, 1.1, 5), (0.2, 2.5, 20), (0.9, 1.1, 7), (0.001, 8.0, 64), (0.5, 0.5, 12)]:
        exact = a_exact_integer(q, sigma, alpha)
        quad = a_quadrature(q, sigma, alpha)
        rel = abs(quad - exact) / exact
        if rel > mp.mpf("1e-14"):
            raise SystemExit(f"quadrature self-check failed at q={q} sigma={sigma} alpha={alpha}: relative error {rel}")


def as_float(x):
    return "inf" if x == mp.inf else float(x)


def build():
    self_check_quadrature()
    qs = [0.001, 0.01, 0.1, 0.5, 0.9, 1.0]
    sigmas = [0.5, 1.1, 2.5, 8.0]
    orders = TF_ORDERS + EXTRA_FRACTIONAL
    rdp_cases = []
    for q in qs:
        for sigma in sigmas:
            values = [rdp_one_step(q, sigma, a) for a in orders]
            rdp_cases.append({"q": q, "sigma": sigma, "orders": orders, "rdp": [as_float(v) for v in values]})

    # (q, sigma, steps, delta) grid for the composed epsilon, over TF_ORDERS, both conversions.
    eps_cases = []
    per_step = {}
    for q, sigma, steps, delta in [
        (0.001, 1.1, 1000, 1e-5), (0.01, 1.1, 100, 1e-5), (0.01, 0.8, 1000, 1e-6), (0.05, 2.0, 500, 1e-5),
        (0.1, 1.0, 50, 1e-3), (0.1, 5.0, 10000, 1e-8), (0.5, 3.0, 20, 1e-5), (1.0, 4.0, 10, 1e-5),
        (256 / 60000, 1.1, math.ceil(60 * 60000 / 256), 1e-5),
    ]:
        key = (q, sigma)
        if key not in per_step:
            per_step[key] = [rdp_one_step(q, sigma, a) for a in TF_ORDERS]
        composed = [r * steps for r in per_step[key]]
        e_imp, a_imp = eps_improved(TF_ORDERS, composed, delta)
        e_cls, a_cls = eps_classic(TF_ORDERS, composed, delta)
        eps_cases.append({
            "q": q, "sigma": sigma, "steps": steps, "delta": delta,
            "eps_improved": float(e_imp), "order_improved": float(a_imp),
            "eps_classic": float(e_cls), "order_classic": float(a_cls),
        })

    # The published examples, recomputed here so that the C# test's expectations are explained by this script too.
    opacus_rdp = [rdp_one_step(0.04, 1.5, a) * 2250 for a in OPACUS_ORDERS]
    published = {
        "opacus_rdp_accountant": {"q": 0.04, "sigma": 1.5, "steps": 2250, "delta": 1e-5, "orders": "opacus",
                                  "eps_improved": float(eps_improved(OPACUS_ORDERS, opacus_rdp, 1e-5)[0])},
    }
    for sigma, epochs in [(1.1, 60), (1.3, 15), (0.7, 45)]:
        steps = math.ceil(epochs * 60000 / 256)
        rdp = [rdp_one_step(256 / 60000, sigma, a) * steps for a in TF_ORDERS]
        published[f"tf_privacy_mnist_sigma{sigma}_epochs{epochs}"] = {
            "q": 256 / 60000, "sigma": sigma, "steps": steps, "delta": 1e-5, "orders": "tf",
            "eps_classic": float(eps_classic(TF_ORDERS, rdp, 1e-5)[0]),
            "eps_improved": float(eps_improved(TF_ORDERS, rdp, 1e-5)[0]),
        }

    return {
        "generator": "tests/reference/dp/rdp_reference.py (mpmath, 30 digits; A_alpha by exact sum or quadrature)",
        "tf_orders": TF_ORDERS,
        "opacus_orders": OPACUS_ORDERS,
        "rdp_cases": rdp_cases,
        "eps_cases": eps_cases,
        "published": published,
    }


def main():
    text = json.dumps(build(), indent=1, sort_keys=True) + "\n"
    if "--check" in sys.argv:
        with open(GOLDEN, encoding="utf-8") as f:
            if f.read() != text:
                print("rdp_golden.json differs from a fresh computation", file=sys.stderr)
                sys.exit(1)
        print("rdp_golden.json is up to date")
        return
    with open(GOLDEN, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
