"""Forms for stopping, rolling back and cancelling deployments.

They parse what the browser posts; the services decide what is allowed, and their errors are put
back next to the field (``flagdash.flags.forms.apply_service_errors``).
"""

from __future__ import annotations

from django import forms

REASON_REQUIRED = "Say why you roll back: it goes in the audit log."


class RollbackForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3, "autofocus": True}),
        help_text="Recorded in the audit log and on the rollbacks page.",
        error_messages={"required": REASON_REQUIRED},
    )


class RetryForm(forms.Form):
    overwrite_drift = forms.BooleanField(
        required=False,
        label="Overwrite the changes made outside flagdash",
        help_text="The backend's copy was edited by someone else since flagdash last deployed. "
        "Those edits will be replaced by this version.",
    )


class CancelForm(forms.Form):
    """Nothing to fill in: the form only carries the service's errors back to the page."""
