"""``gradleak audit``: is this federated setup safe? One command, one report.

``run_audit(AuditSettings(...), out=DIR)`` runs the rank analysis, label recovery, the attack
battery over batch sizes and a defense sweep, and writes ``report.html`` (self-contained)
and ``results.json``; see :mod:`gradleak.audit.run`.
"""

from .budget import BUDGETS, Budget, get_budget
from .run import run_audit
from .settings import AuditSettings
from .verdict import Thresholds

__all__ = ["AuditSettings", "BUDGETS", "Budget", "Thresholds", "get_budget", "run_audit"]
