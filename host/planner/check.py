"""The check before every push: the plan as the Pi will carry it out, against doing nothing (pure).

Both are simulated the same way (``dp.execute`` over the forecast) and compared by net cost
(the bill less the worth of the energy left in the battery). A plan that would cost more
than doing nothing is never pushed: self-consumption goes out instead, with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from handshake.modes import Command
from host.planner import dp

# A plan may lose this much (EUR over the horizon) to rounding and still count as no worse.
TOLERANCE_EUR = 1e-6


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str  # "optimal": the DP's plan goes out; "fallback": self-consumption instead
    commands: list[Command]  # what is pushed
    expected: dp.Outcome  # what it does on the forecast
    expected_eur: float  # its net cost
    baseline: dp.Outcome  # doing nothing
    baseline_eur: float
    planned_eur: float  # the DP plan's net cost as carried out (= expected_eur unless fallback)
    reason: str | None  # why the DP's plan was not pushed

    @property
    def savings_eur(self) -> float:
        return self.baseline_eur - self.expected_eur


def check(p: dp.Problem, plan: Sequence[Command]) -> Verdict:
    """Push ``plan`` only when carrying it out costs no more than doing nothing."""
    nothing = dp.self_consumption(p)
    baseline = dp.execute(p, nothing)
    baseline_eur = dp.net_cost(p, baseline)
    outcome = dp.execute(p, plan)
    planned_eur = dp.net_cost(p, outcome)
    if planned_eur <= baseline_eur + TOLERANCE_EUR:
        return Verdict("optimal", list(plan), outcome, planned_eur, baseline, baseline_eur,
                       planned_eur, None)
    reason = (f"the plan as the Pi would carry it out costs {planned_eur:.4f} EUR on the "
              f"forecast, doing nothing {baseline_eur:.4f} EUR: self-consumption instead")
    return Verdict("fallback", nothing, baseline, baseline_eur, baseline, baseline_eur,
                   planned_eur, reason)
