"""Markdown tables, and the rows of one dataset's results that the report and the plots look up."""

from typing import Any, Dict, List, Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], text_columns: int = 1) -> str:
    """A Markdown table; the first `text_columns` columns are left-aligned, the others right."""
    aligns = [":---" if index < text_columns else "---:" for index in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(aligns) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def drop_label(result: Dict[str, Any], threshold: float) -> str:
    """`full` for threshold 1.0, else the accuracy drops on dev it was chosen for (`0.5 pt`)."""
    labels = [
        f"{float(drop) * 100:g} pt"
        for drop, entry in result["accuracy"]["chosen"].items()
        if entry["threshold"] == threshold
    ]
    return "full" if threshold == 1.0 else " / ".join(labels)


def model_row(result, batch_size, batching, threshold) -> Dict[str, Any]:
    return next(
        row
        for row in result["model_time"]
        if row["batch_size"] == batch_size
        and row["batching"] == batching
        and row["threshold"] == threshold
    )


def e2e_run(result, batch_size, threshold) -> Dict[str, Any]:
    return next(
        row
        for row in result["e2e"]["runs"]
        if row["batch_size"] == batch_size and row["threshold"] == threshold
    )


def thresholds_of(result) -> List[float]:
    """The timed thresholds, 1.0 first."""
    return sorted({row["threshold"] for row in result["model_time"]}, reverse=True)
