"""Cost governance: prices, unit economics, budgets with burn-rate alerts, cost regressions.

Pure values in, :class:`~detectors.findings.Finding` out (see ``docs/COST.md``):

* :class:`CostAccountant` prices each call from the :class:`PriceCatalog`
  (``cost.unpriced_model``, ``cost.reported_mismatch``).
* :class:`AgentRunAggregator` closes agent runs and yields cost per run and per
  successful action (:class:`RunSummary`).
* :class:`BurnRateBudget` tracks one budget (``cost.budget_burn``, ``cost.budget_exhausted``).
* :class:`CostRegressionDetector` detects a rise in cost per request or per successful
  action and names its driver (``cost.regression``).
"""

from detectors.cost.accounting import CostAccountant, Costing
from detectors.cost.budgets import BurnRateBudget, WindowedSums
from detectors.cost.config import (
    WORKBOOK_RULES,
    BudgetSpec,
    BurnRule,
    CostPolicy,
    RegressionConfig,
    load_cost_policy,
    period_bounds,
)
from detectors.cost.cusum import RobustCusum, siegmund_limit
from detectors.cost.prices import PriceCatalog, PriceEntry, load_price_catalog
from detectors.cost.regression import DRIVERS, CostRegressionDetector
from detectors.cost.runs import AgentRunAggregator, RunSummary
from detectors.cost.values import (
    ChangeEvent,
    CostSample,
    CostUnit,
    ModelUsage,
    TokenPrice,
    events_near,
)

__all__ = [
    "DRIVERS", "WORKBOOK_RULES", "AgentRunAggregator", "BudgetSpec", "BurnRateBudget", "BurnRule",
    "ChangeEvent", "CostAccountant", "CostPolicy", "CostRegressionDetector", "CostSample",
    "CostUnit", "Costing", "ModelUsage", "PriceCatalog", "PriceEntry", "RegressionConfig",
    "RobustCusum", "RunSummary", "TokenPrice", "WindowedSums", "events_near",
    "load_cost_policy", "load_price_catalog", "period_bounds", "siegmund_limit",
]
