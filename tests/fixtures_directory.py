"""Fixtures of the directory and single sign-on tests (private slapd, browser)."""
