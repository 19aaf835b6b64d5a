"""Compliance: signing keys, receipts, anchors, signed exports, the erasure ledger, FHIR.

Pure functions and small async functions over the store's pool; HTTP routes and CLI
verbs (``api/``) wire them. Every check answers with ``report.VerifyResult`` (``ok`` and
named ``problems``).
"""

from alliance.core.compliance.anchors import check_against_anchors, latest_anchor, write_anchor
from alliance.core.compliance.erasure import erase_subject, reapply_erasures, record_erasure
from alliance.core.compliance.export import build_export, verify_export_file
from alliance.core.compliance.fhir import build_bundle, check_bundle, check_codes
from alliance.core.compliance.receipts import issue_receipt, issue_receipts, verify_receipt
from alliance.core.compliance.report import Problem, VerifyResult
from alliance.core.compliance.signing import Signer, verify

__all__ = [
    "Problem",
    "Signer",
    "VerifyResult",
    "build_bundle",
    "build_export",
    "check_against_anchors",
    "check_bundle",
    "check_codes",
    "erase_subject",
    "issue_receipt",
    "issue_receipts",
    "latest_anchor",
    "reapply_erasures",
    "record_erasure",
    "verify",
    "verify_export_file",
    "verify_receipt",
    "write_anchor",
]
