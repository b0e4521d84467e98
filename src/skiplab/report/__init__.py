"""The HTML report: one section per claim, rebuilt from the results store."""

from skiplab.report.builder import build_report, claim_record, report_lock

__all__ = ["build_report", "claim_record", "report_lock"]
