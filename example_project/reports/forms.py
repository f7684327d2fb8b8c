from __future__ import annotations

from typing import Any, ClassVar

from django import forms

from .models import Report, parse_numbers


class ReportForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Report
        fields = ("title", "numbers")
        widgets: ClassVar[dict[str, Any]] = {
            "numbers": forms.TextInput(attrs={"placeholder": "3 1 4 1 5 9 2 6"})
        }

    def clean_numbers(self) -> str:
        text: str = self.cleaned_data["numbers"]
        try:
            numbers = parse_numbers(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not a list of numbers: {exc}") from None
        if not numbers:
            raise forms.ValidationError("Give at least one number.")
        return text
