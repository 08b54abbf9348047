"""Helpers about users shared by the account services."""

from __future__ import annotations


def normalise_email(email: str) -> str:
    return email.strip().lower()
