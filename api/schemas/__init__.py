"""The API's response models, one home for every answer's shape.

The views are rendered as dicts by the projections (``core/projections``) and encoded as they
are; these Structs say what those dicts hold, field by field, so the OpenAPI document (and the
clients generated from it) name every type. ``tests/api/test_response_shapes.py`` checks real
answers against them: no field undeclared, no required field missing, every value of its type.
A field a view sends only sometimes is ``UNSET`` by default (absent, never null).
"""

from alliance.api.schemas.commands import CommandResult, ErasureResult, MeasurementResult, RecordedRef
from alliance.api.schemas.compliance import (
    AccessLog,
    FhirBundle,
    HistoryExport,
    KeySet,
    MyDataExport,
    VerificationReport,
    VerificationResult,
)
from alliance.api.schemas.history import HistoryView
from alliance.api.schemas.plan import GoalView, PlanView
from alliance.api.schemas.problems import Problem
from alliance.api.schemas.progress import ProgressView
from alliance.api.schemas.system import Caseload, Health, InstrumentList, Readiness, StaffList

__all__ = ["AccessLog", "Caseload", "CommandResult", "ErasureResult", "FhirBundle", "GoalView", "Health",
           "HistoryExport", "HistoryView", "InstrumentList", "KeySet", "MeasurementResult", "MyDataExport",
           "PlanView", "Problem", "ProgressView", "Readiness", "RecordedRef", "StaffList", "VerificationReport",
           "VerificationResult"]
