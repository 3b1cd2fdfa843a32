"""Reports of a run, written from the run record: the HTML page (JUnit, Allure and trends sit beside it)."""

from harness.report.html import write_html_report

__all__ = ["write_html_report"]
