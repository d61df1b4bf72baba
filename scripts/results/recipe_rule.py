"""
The rule that picks a recipe of the recipe search (docs/recipe_search.md), fixed before the runs
and applied to the dev columns alone; the search (`recipes.py`) and its report
(`report_recipes.py`) both read it from here.
"""

from typing import Any, Dict, List, Optional

from scripts.results.settings import drop_key

ADOPTED = "adopted"
# The accuracy drop on dev each recipe's threshold is chosen for, and how far below the best full
# depth on dev a recipe may be and still be picked: one point each.
DROP = 0.01
FULL_DEPTH_MARGIN = 0.01


def pick(recipes: List[Dict[str, Any]]) -> Optional[str]:
    """
    The rule, fixed before the runs, on dev alone: among the trained recipes whose full depth on
    dev is at most `FULL_DEPTH_MARGIN` below the best, the one whose threshold chosen within `DROP`
    on dev costs the least compute there (the higher full depth on dev breaks a tie).
    """
    trained = [recipe for recipe in recipes if "dev_full_accuracy" in recipe]
    if not trained:
        return None
    best = max(recipe["dev_full_accuracy"] for recipe in trained)
    eligible = [r for r in trained if r["dev_full_accuracy"] >= best - FULL_DEPTH_MARGIN - 1e-12]
    key = drop_key(DROP)
    chosen = min(
        eligible,
        key=lambda r: (r["dev_at_chosen"][key]["relative_compute"], -r["dev_full_accuracy"]),
    )
    return chosen["name"]
